#!/usr/bin/env node
// Serves the built Worker on workerd as several locations of one deployed
// edge, for the propagation tests and bench/propagation. Local testing only.
//
// Each location is a Worker of its own (so an isolate of its own, with its
// own memory, as at a real location), on its own port. All of them share
// one rollout object, one replica per region and one KV namespace, as the
// locations of a deployed edge do. Their entry is the test entry
// `locations-entry.mjs`, which sets each location's `request.cf` (code and
// coordinates) from the location's own binding, and can delay or break a
// replica and count its reads (`/__test/` routes). The production bundle
// has neither: `wrangler.toml`'s entry is `build/index.js`.
//
//   node serve-locations.mjs --config wrangler.toml --persist-to DIR \
//        --locations FRA:50.1:8.7,SIN:1.35:103.8[,...] [--ip 127.0.0.1]
//
// A code may repeat: two isolates at one location. Prints
// `location <index> <code> <url>` per location, then `ready`; SIGTERM or
// SIGINT disposes of workerd.
import { Miniflare, Log, LogLevel } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags, stopOnSignals } from "./serve-lib.mjs";

function parseArgs(argv) {
  const out = parseFlags(
    argv,
    { "--config": "config", "--persist-to": "persistTo", "--ip": "ip", "--locations": "locations" },
    { ip: "127.0.0.1" },
    ["--config", "--persist-to", "--locations"],
  );
  out.locations = out.locations.split(",").map((spec) => {
    const [colo, latitude, longitude] = spec.split(":");
    if (!/^[A-Z0-9]{2,8}$/.test(colo ?? "") || !Number.isFinite(Number(latitude)) || !Number.isFinite(Number(longitude))) {
      throw new Error(`--locations: ${JSON.stringify(spec)} is not CODE:LATITUDE:LONGITUDE`);
    }
    return { colo, latitude: Number(latitude), longitude: Number(longitude) };
  });
  return out;
}

const args = parseArgs(process.argv.slice(2));
const here = path.dirname(fileURLToPath(import.meta.url));
const { workerOptions } = unstable_getMiniflareWorkerOptions(path.resolve(args.config));
const entry = path.join(here, "locations-entry.mjs");
const names = args.locations.map((loc, i) => `location-${i}-${loc.colo.toLowerCase()}`);
const primary = names[0];

const workers = args.locations.map((loc, i) => ({
  ...workerOptions,
  name: names[i],
  modules: true,
  scriptPath: entry,
  // The entry imports build/worker/shim.mjs, which imports its wasm.
  modulesRoot: here,
  bindings: { ...workerOptions.bindings, GREENLIGHT_TEST_LOCATION: loc },
  // The first location's Worker hosts the rollout object and the
  // replicas; the others reach the same instances.
  durableObjects:
    i === 0
      ? workerOptions.durableObjects
      : Object.fromEntries(
          Object.entries(workerOptions.durableObjects ?? {}).map(([binding, spec]) => [
            binding,
            { className: typeof spec === "string" ? spec : spec.className, scriptName: primary },
          ]),
        ),
  unsafeDirectSockets: [{ host: args.ip, port: 0 }],
}));

const mf = new Miniflare({
  host: args.ip,
  port: 0,
  defaultPersistRoot: path.join(path.resolve(args.persistTo), "v3"),
  log: new Log(LogLevel.WARN),
  cf: false,
  logRequests: false,
  workers,
});

await mf.ready;
for (let i = 0; i < names.length; i++) {
  const url = await mf.unsafeGetDirectURL(names[i]);
  console.log(`location ${i} ${args.locations[i].colo} ${url.toString().replace(/\/$/, "")}`);
}
console.log("ready");

stopOnSignals(mf);
