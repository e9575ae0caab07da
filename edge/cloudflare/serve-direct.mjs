#!/usr/bin/env node
// Serves the built Worker on workerd through Miniflare's API: the runtime,
// the local KV and Durable Object storage that `wrangler dev` uses, read
// from the same wrangler.toml (vars) and .dev.vars (secrets), without
// `wrangler dev`'s proxy Worker (a second workerd in front) and its
// devtools relay (the node process forwards the inspector's `Network.*`
// events for every subrequest), which cost ~5 ms of CPU per request.
//
//   node serve-direct.mjs --config wrangler.toml --persist-to DIR \
//        [--ip 127.0.0.1] [--port 8787] [--https-key-path K --https-cert-path C]
//        [--inspector-port P]
//
// `--persist-to` is `wrangler dev --persist-to`'s directory (the state
// lives under DIR/v3), so `wrangler kv key put --local --persist-to DIR`
// reads and writes the same namespace. Prints `ready on <url>` once the
// Worker answers; SIGTERM/SIGINT dispose of workerd. Local development
// and tests only.
import { Miniflare, Log, LogLevel } from "miniflare";
import {
  unstable_getMiniflareWorkerOptions,
  unstable_readConfig,
} from "wrangler";
import path from "node:path";
import { parseFlags, stopOnSignals } from "./serve-lib.mjs";

function parseArgs(argv) {
  const out = parseFlags(
    argv,
    {
      "--config": "config",
      "--persist-to": "persistTo",
      "--ip": "ip",
      "--port": "port",
      "--https-key-path": "httpsKeyPath",
      "--https-cert-path": "httpsCertPath",
      "--inspector-port": "inspectorPort",
    },
    { ip: "127.0.0.1", port: 8787 },
    ["--config", "--persist-to"],
  );
  out.port = Number(out.port);
  if (out.inspectorPort !== undefined) out.inspectorPort = Number(out.inspectorPort);
  return out;
}

const args = parseArgs(process.argv.slice(2));
const configPath = path.resolve(args.config);
const config = unstable_readConfig({ config: configPath });
// The bindings `wrangler dev` would give the Worker: [vars], .dev.vars
// beside the config, KV namespaces, Durable Objects (SQLite per the
// migrations), module rules (wasm as CompiledWasm).
const { workerOptions, main } = unstable_getMiniflareWorkerOptions(configPath);
if (!main) {
  throw new Error(`${configPath} names no main module`);
}

const scriptPath = path.resolve(path.dirname(configPath), main);
const mf = new Miniflare({
  host: args.ip,
  port: args.port,
  https: Boolean(args.httpsKeyPath),
  httpsKeyPath: args.httpsKeyPath,
  httpsCertPath: args.httpsCertPath,
  // `wrangler dev --persist-to DIR` keeps its state under DIR/v3.
  defaultPersistRoot: path.join(path.resolve(args.persistTo), "v3"),
  log: new Log(LogLevel.INFO),
  // The placeholder `request.cf` (as with CLOUDFLARE_CF_FETCH_ENABLED=false
  // under `wrangler dev`), instead of fetching one from Cloudflare.
  cf: false,
  // Miniflare logs each request through a fetch back into this node
  // process (its loopback service): CPU per request the Worker itself
  // does not cost. The Worker's own console output is still shown.
  logRequests: false,
  // The V8 inspector (Chrome DevTools protocol), only when asked for: the
  // soak reads the isolate's JS heap through it (`heap-usage.mjs`).
  inspectorPort: args.inspectorPort,
  workers: [
    {
      ...workerOptions,
      name: config.name,
      modules: true,
      scriptPath,
      // Module names are paths below this (the bundle's own directory).
      modulesRoot: path.dirname(scriptPath),
    },
  ],
});

const url = await mf.ready;
console.log(`ready on ${url}`);

stopOnSignals(mf);
