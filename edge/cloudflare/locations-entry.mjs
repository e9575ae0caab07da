// The test entry of serve-locations.mjs: the built greenlight Worker as
// one location among several. Never deployed (wrangler.toml's entry is
// build/index.js), so nothing here is an input a client of a deployed
// edge could use.
//
// - Each location's `request.cf` (its code and coordinates, which pick its
//   cache key and its region's replica) comes from its own binding
//   GREENLIGHT_TEST_LOCATION, as Cloudflare sets it per location.
// - `POST /__test/replica/<region>/fault` with {"down": bool,
//   "fail_pushes": n, "push_ms": ms, "read_ms": ms} breaks or delays that
//   region's replica: down answers every read and push with a 503;
//   fail_pushes fails that many pushes; push_ms and read_ms delay each
//   push (the primary's round trip to that region) and each read (a
//   location's round trip to its replica).
// - `GET /__test/replica/<region>/stats` counts the reads and pushes the
//   replica was sent.
import worker, { RolloutObject, StateReplica as Replica } from "./build/worker/shim.mjs";

export { RolloutObject };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const FAULT_KEY = "test-fault";

export class StateReplica extends Replica {
  constructor(ctx, env) {
    super(ctx, env);
    this.fault = {};
    this.reads = 0;
    this.pushes = 0;
    // Kept in storage: the fault outlives the replica's eviction.
    ctx.blockConcurrencyWhile(async () => {
      this.fault = (await ctx.storage.get(FAULT_KEY)) ?? {};
    });
  }

  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/__test/fault") {
      this.fault = await request.json();
      await this.ctx.storage.put(FAULT_KEY, this.fault);
      return Response.json(this.fault);
    }
    if (path === "/__test/stats") {
      return Response.json({ reads: this.reads, pushes: this.pushes });
    }
    const fault = this.fault;
    if (path === "/document") {
      this.reads += 1;
      if (fault.read_ms > 0) await sleep(fault.read_ms);
      if (fault.down) return new Response("replica down (test fault)", { status: 503 });
    } else if (path === "/push") {
      this.pushes += 1;
      if (fault.push_ms > 0) await sleep(fault.push_ms);
      if (fault.down) return new Response("replica down (test fault)", { status: 503 });
      if (fault.fail_pushes > 0) {
        fault.fail_pushes -= 1;
        await this.ctx.storage.put(FAULT_KEY, fault);
        return new Response("push refused (test fault)", { status: 503 });
      }
    }
    return super.fetch(request);
  }
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const test = url.pathname.match(/^\/__test\/replica\/([a-z]+)\/(fault|stats)$/);
    if (test !== null) {
      const ns = env.GREENLIGHT_REPLICA;
      const replica = ns.get(ns.idFromName("replica-" + test[1]));
      return replica.fetch("https://replica/__test/" + test[2], {
        method: request.method,
        body: request.method === "POST" ? await request.text() : undefined,
      });
    }
    const here = env.GREENLIGHT_TEST_LOCATION;
    const cf = {
      ...(request.cf ?? {}),
      colo: here.colo,
      latitude: String(here.latitude),
      longitude: String(here.longitude),
    };
    return worker.fetch(new Request(request, { cf }), env, ctx);
  },
};
