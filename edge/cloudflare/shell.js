// greenlight's Worker entry: the JavaScript half of the Cloudflare adapter.
//
// This shell does the request's I/O with the runtime's own APIs (fetch,
// AbortSignal, Response) and asks the Rust core what to do at each step, in
// synchronous calls that pass one string each way (the protocol is
// documented in common/src/shell.rs). It makes no decisions: which origin,
// which headers, whether to retry, what to answer all come from Rust.
//
// Built by `worker-build` as its CUSTOM_SHIM template (scripts/build-worker.sh):
// the placeholders below are filled with wasm-bindgen's snippet imports.
import * as wasm from "./index_bg.js";
import wasmModule from "./index.wasm";
$SNIPPET_JS_IMPORTS

const instance = new WebAssembly.Instance(wasmModule, {
  "./index_bg.js": wasm,
  $SNIPPET_WASM_IMPORTS
});
wasm.__wbg_set_wasm(instance.exports);
instance.exports.__wbindgen_start?.();

// A model route's body is read whole up to this many bytes (one over the
// limit tells a body that is too large), then rewritten per attempt.
const REWRITE_READ_LIMIT = wasm.rewriteReadLimit();

// Reads at most `limit` bytes of the request's body (the rest is left
// unread and the stream cancelled).
async function readLimited(request, limit) {
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const parts = [];
  let size = 0;
  while (size < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    size += value.byteLength;
  }
  if (size >= limit) reader.cancel().catch(() => {});
  const out = new Uint8Array(Math.min(size, limit));
  let at = 0;
  for (const part of parts) {
    const take = Math.min(part.byteLength, out.length - at);
    out.set(part.subarray(0, take), at);
    at += take;
  }
  return out;
}

// Header lists cross as "name\nvalue\n..." (a header never holds a line feed).
function headerLines(headers) {
  let out = "";
  for (const [name, value] of headers) {
    out += (out === "" ? "" : "\n") + name + "\n" + value;
  }
  return out;
}

function headersFrom(fields, start, end) {
  const headers = new Headers();
  for (let i = start; i + 1 < end; i += 2) {
    headers.append(fields[i], fields[i + 1]);
  }
  return headers;
}

// A delta from fields[at]: <n>, n names to delete, <m>, m name/value pairs
// to append (see common/src/shell.rs). Returns where the delta ends.
function applyDelta(headers, fields, at) {
  const deletes = Number(fields[at]);
  for (let i = at + 1; i <= at + deletes; i++) {
    headers.delete(fields[i]);
  }
  const appendsAt = at + 1 + deletes;
  const end = appendsAt + 1 + 2 * Number(fields[appendsAt]);
  for (let i = appendsAt + 1; i < end; i += 2) {
    headers.append(fields[i], fields[i + 1]);
  }
  return end;
}

// The origin's response with its headers changed by the delta at
// fields[at]; its body streams through (a fetched response's headers are
// immutable, so the body goes on in a new response).
function rewrap(response, status, fields, at) {
  const out = new Response(response.body, {
    status,
    statusText: response.statusText,
    headers: response.headers,
  });
  applyDelta(out.headers, fields, at);
  return out;
}

// The origin timeout (ORIGIN_TIMEOUT_MS) covers the wait for the origin's
// response headers and stops for good when they arrive, so a body then
// streams at the origin's pace. (AbortSignal.timeout would keep counting.)
// A streamed upload is not timed: the edge cannot see when the runtime has
// sent the client's body, and a slow client is not a failing origin.
function originTimer(ms) {
  const controller = new AbortController();
  let timer;
  let stopped = false;
  return {
    signal: controller.signal,
    run() {
      clearTimeout(timer);
      if (!stopped) {
        timer = setTimeout(
          () => controller.abort(new DOMException("no response headers in time", "TimeoutError")),
          ms,
        );
      }
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}


// Reads the client's whole body with `read` before the first attempt: a
// body that broke off or ended short of its length is the client's
// failure, answered with Rust's reply step (`refusal`), never the origin's.
async function readWhole(id, read) {
  let bytes;
  try {
    bytes = await read();
  } catch (e) {
    bytes = undefined;
  }
  const refusal = wasm.bodyRead(id, bytes?.byteLength ?? 0, bytes === undefined);
  return { bytes, refusal };
}

// The client's body as a stream for fetch that notes in `upload.broke`
// when reading the client's upload fails: workerd's fetch then fails with
// the same "Network connection lost" as it does for an origin that went
// away, and only the origin's failure may count. Only a failed read of the
// client's body sets it (not the origin side giving up). A body of known
// length keeps it (FixedLengthStream), so the origin still gets its
// content-length.
function watchedUpload(request, upload) {
  if (request.body === null) return null;
  const length = request.headers.get("content-length");
  const { readable, writable } = length !== null && /^[0-9]+$/.test(length)
    ? new FixedLengthStream(Number(length))
    : new TransformStream();
  const reader = request.body.getReader();
  const writer = writable.getWriter();
  (async () => {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        upload.broke = true;
        writer.abort(e).catch(() => {});
        return;
      }
      if (chunk.done) {
        writer.close().catch(() => {});
        return;
      }
      try {
        await writer.write(chunk.value);
      } catch (e) {
        reader.cancel(e).catch(() => {});
        return;
      }
    }
  })();
  return readable;
}

// The rollout's Durable Object (RolloutObject below): one per rollout,
// found by name. Admin changes and health reports go to it.
const OBJECT_BINDING = "GREENLIGHT_ROLLOUT";
const OBJECT_NAME = "rollout";
function rolloutObject(env) {
  const ns = env[OBJECT_BINDING];
  return ns.get(ns.idFromName(OBJECT_NAME));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// An admin call: Rust authorised it and encoded it (step "admin\n<call>");
// the object decides it, Rust turns the answer into the reply.
async function adminCall(head, call, request, env) {
  let status = 0;
  let text;
  try {
    const body = await request.arrayBuffer();
    const answer = await rolloutObject(env).fetch("https://rollout/admin", {
      method: "POST",
      headers: { "x-greenlight-call": call },
      body,
    });
    status = answer.status;
    text = await answer.text();
  } catch (e) {
    status = 0;
    text = String(e);
  }
  return replyFrom(wasm.adminAnswered(head, status, text, Date.now()));
}

// Sends this isolate's health record to the object after `delay` ms (Rust
// schedules at most one report a second, however many failures).
async function reportHealth(env, delay) {
  if (delay > 0) await sleep(delay);
  const report = wasm.takeHealthReport(Date.now());
  if (report === undefined) return;
  try {
    await rolloutObject(env).fetch("https://rollout/health", {
      method: "POST",
      body: report,
    });
  } catch (e) {
    // Health is advisory; the next report carries these failures again.
  }
}

// Sends this isolate's telemetry batch to the rollout object, where the
// batches are summed. A batch that fails to arrive is lost (its counts,
// never a request); the next one starts from zero.
async function flushTelemetry(env, delay) {
  if (delay > 0) await sleep(delay);
  const batch = wasm.takeTelemetry(Date.now());
  if (batch === undefined) return;
  try {
    await rolloutObject(env).fetch("https://rollout/telemetry", {
      method: "POST",
      body: batch,
    });
  } catch (e) {
    // Lost with the batch: counts, not requests.
  }
}

// A region's read replica (StateReplica below), created in that region
// (the hint counts only when the object is first created).
const REPLICA_BINDING = "GREENLIGHT_REPLICA";
function replicaObject(env, region) {
  const ns = env[REPLICA_BINDING];
  if (ns === undefined) {
    // Said in GET replicas' last error and by every degraded answer.
    throw new Error(`no ${REPLICA_BINDING} binding: add it (wrangler.toml) or set STATE_SOURCE = "kv"`);
  }
  return ns.get(ns.idFromName("replica-" + region), { locationHint: region });
}

// Reads the state document the way Rust says (statePlace): the location's
// cache, else its region's replica (whose answer fills the cache for
// max-age seconds), else KV, read by Rust. Never throws: a failed read is
// the next source's turn.
async function readState(request, env) {
  const cf = request.cf ?? {};
  const how = wasm.statePlace(env, request.url, cf.colo, Number(cf.latitude), Number(cf.longitude));
  if (how === "object") {
    try {
      const resp = await rolloutObject(env).fetch("https://rollout/document");
      if (resp.ok) return { doc: await resp.text(), source: "object" };
    } catch (e) {
      // An unreachable object degrades like an unreadable document.
    }
    return { doc: "{", source: "object" };
  }
  if (how.startsWith("replicas\n")) {
    const [, key, region, maxAge] = how.split("\n");
    try {
      const hit = await caches.default.match(key);
      if (hit !== undefined) return { doc: await hit.text(), source: "cache" };
    } catch (e) {
      // No cache here (workers.dev has none): the replica answers.
    }
    try {
      const resp = await replicaObject(env, region).fetch("https://replica/document", {
        headers: { "x-greenlight-region": region },
      });
      if (resp.ok) {
        const doc = await resp.text();
        try {
          await caches.default.put(key, new Response(doc, { headers: { "cache-control": "max-age=" + maxAge } }));
        } catch (e) {
          // The next read asks the replica again.
        }
        return { doc, source: "replica" };
      }
    } catch (e) {
      // The replica is unreachable: KV, the fallback.
    }
  }
  return { doc: undefined, source: "kv" };
}

async function loadEdge(request, env) {
  const read = await readState(request, env);
  await wasm.loadEdge(env, read.doc, read.source);
}

// Attempts delivered without a second call into Rust, reported with the
// next request so it can forget them.
let finished = [];

// Random bits for the core (anonymous ids, weighted draws), drawn from the
// runtime's CSPRNG a batch at a time rather than with a call per request.
const randomPool = new Uint32Array(256);
let randomNext = randomPool.length;
function random32() {
  if (randomNext === randomPool.length) {
    crypto.getRandomValues(randomPool);
    randomNext = 0;
  }
  return randomPool[randomNext++];
}

function requestHead(request) {
  const headers = headerLines(request.headers);
  const head = request.method + "\n" + request.url;
  return headers === "" ? head : head + "\n" + headers;
}

// Where each field of a step sits once it is split at "\n": written by
// greenlight_common::shell (its `field` module; a unit test there reads
// these tables and checks they agree).
const FORWARD = { id: 1, method: 2, url: 3, timeoutMs: 4, body: 5, deliverBelow: 6, requestDelta: 7 };
const REPLY = { status: 1, headerCount: 2, headers: 3 };
const DELIVER = { status: 1, responseDelta: 2 };

// reply\n<status>\n<header count>\n<headers...>\n<body>
function replyFrom(step) {
  const fields = step.split("\n");
  const end = REPLY.headers + 2 * Number(fields[REPLY.headerCount]);
  return new Response(fields.slice(end).join("\n"), {
    status: Number(fields[REPLY.status]),
    headers: headersFrom(fields, REPLY.headers, end),
  });
}

export default {
  async fetch(request, env, ctx) {
    const head = requestHead(request);
    const hi = random32();
    const lo = random32();
    const done = finished;
    finished = [];
    let step = wasm.beginRequest(head, Date.now(), hi, lo, false, done);
    if (step === "load") {
      await loadEdge(request, env);
      step = wasm.beginRequest(head, Date.now(), hi, lo, true, []);
    } else if (step.startsWith("refresh\n")) {
      // The state this isolate holds is past its TTL: this request goes
      // on with it while a newer one is read.
      ctx.waitUntil(loadEdge(request, env));
      step = step.slice("refresh\n".length);
    }
    if (step.startsWith("admin\n")) {
      return adminCall(head, step.slice("admin\n".length), request, env);
    }
    const upload = { broke: false }; // set when the client's upload breaks off
    let buffered; // a body kept for a retry
    let raw; // a model route's body as the client sent it
    let response; // the last origin response
    for (;;) {
      for (;;) {
        if (step.startsWith("persist\n")) {
          // persist\n<delay ms>\n<step>
          const at = step.indexOf("\n", "persist\n".length);
          ctx.waitUntil(reportHealth(env, Number(step.slice("persist\n".length, at))));
          step = step.slice(at + 1);
        } else if (step.startsWith("flush\n")) {
          // flush\n<delay ms>\n<step>
          const at = step.indexOf("\n", "flush\n".length);
          ctx.waitUntil(flushTelemetry(env, Number(step.slice("flush\n".length, at))));
          step = step.slice(at + 1);
        } else {
          break;
        }
      }
      const kind = step.slice(0, step.indexOf("\n"));
      if (kind === "forward") {
        // forward\n<id>\n<method>\n<url>\n<timeout ms>\n<body>\n
        // <deliver below>\n<request delta>\n<response delta>
        const fields = step.split("\n");
        const id = Number(fields[FORWARD.id]);
        const timer = originTimer(Number(fields[FORWARD.timeoutMs]));
        const bodyMode = fields[FORWARD.body];
        let body;
        if (bodyMode === "buffer") {
          if (buffered === undefined) {
            const whole = await readWhole(id, async () => new Uint8Array(await request.arrayBuffer()));
            if (whole.refusal !== undefined) return replyFrom(whole.refusal);
            buffered = whole.bytes;
          }
          body = buffered;
        } else if (bodyMode === "stream") {
          body = watchedUpload(request, upload);
        } else if (bodyMode === "rewrite") {
          if (raw === undefined) {
            const whole = await readWhole(id, () => readLimited(request, REWRITE_READ_LIMIT));
            if (whole.refusal !== undefined) return replyFrom(whole.refusal);
            raw = whole.bytes;
          }
          body = wasm.modelBody(id, raw);
          if (body === undefined) {
            // Not a body the edge can rewrite: a 400, and no origin sees it.
            return replyFrom(wasm.modelRefusal(id, raw));
          }
        }
        const headers = new Headers(request.headers);
        let responseDeltaAt;
        try {
          responseDeltaAt = applyDelta(headers, fields, FORWARD.requestDelta);
        } catch (e) {
          // The runtime refused a header value: no origin sees the request,
          // and no origin is counted as failing for it.
          return replyFrom(wasm.headersRefused(id, String(e)));
        }
        const started = Date.now();
        let report;
        if (bodyMode !== "stream") {
          timer.run();
        }
        try {
          response = await fetch(fields[FORWARD.url], {
            method: fields[FORWARD.method],
            headers,
            body,
            // The origin's answer as it is (a redirect is the client's to
            // follow: following it here would serve the page at the wrong
            // URL, drop its cookies and re-send credentials elsewhere).
            redirect: "manual",
            signal: timer.signal,
          });
        } catch (e) {
          response = undefined;
          if (bodyMode === "stream" && upload.broke) {
            // The client's upload broke off (workerd's fetch then fails
            // with the same "Network connection lost" as an origin's
            // would): its failure, never counted against the origin.
            return replyFrom(wasm.clientGone(id));
          }
          report = e?.name === "TimeoutError" ? "timeout" : "error\n" + String(e);
        }
        timer.stop();
        if (response !== undefined) {
          if (response.webSocket) {
            // An accepted WebSocket upgrade: the socket itself goes back.
            finished.push(id);
            const out = new Headers(response.headers);
            applyDelta(out, fields, responseDeltaAt);
            return new Response(null, { status: 101, webSocket: response.webSocket, headers: out });
          }
          // (An interim answer, such as 103 Early Hints taken for the final
          // one, goes to Rust: a Response cannot carry a 1xx status.)
          const status = response.status;
          if (status >= 200 && status < Number(fields[FORWARD.deliverBelow]) && !response.headers.has("connection")) {
            // The answer Rust said in advance it would pass on this way,
            // counted in this isolate's telemetry (flushed at most once a
            // second).
            const flushIn = wasm.answered(id, status, started, Date.now(), Number(response.headers.get("content-length") ?? NaN));
            if (flushIn >= 0) ctx.waitUntil(flushTelemetry(env, flushIn));
            return rewrap(response, response.status, fields, responseDeltaAt);
          }
          report = response.status + "\n" + headerLines(response.headers);
        }
        step = wasm.afterAttempt(id, report, started, Date.now());
      } else if (kind === "deliver") {
        // deliver\n<status>\n<response delta>
        const fields = step.split("\n");
        return rewrap(response, Number(fields[DELIVER.status]), fields, DELIVER.responseDelta);
      } else if (kind === "reply") {
        return replyFrom(step);
      } else {
        // Cannot happen: every step Rust returns is one of the above.
        return new Response(`unexpected edge step ${kind}`, { status: 502 });
      }
    }
  },
};

// The rollout's Durable Object: the source of truth for its state.
//
// Every admin call of every edge comes here and is decided by Rust
// (objectChange) against the document this object holds in memory, in one
// synchronous call: nothing else runs between reading the document,
// checking the expected epoch and replacing it, so one change wins per
// epoch. The new document goes to transactional storage before the answer
// leaves (the output gate holds the answer until the write is durable),
// then to KV, where the edges read it: at most one KV write per key a
// second, intermediate documents coalesced, a failed write retried, never
// failing the admin call (KV takes about one write per second per key).
const STORAGE_STATE = "state";
const STORAGE_HEALTH = "health";
const STORAGE_PUBLISHED = "published";
const STORAGE_EVIDENCE = "evidence";
const STORAGE_TELEMETRY = "rollout-telemetry"; // common::telemetry::TELEMETRY_KEY
const STORAGE_HISTORY = "rollout-history"; // common::history::HISTORY_KEY
const STATE_KEY = "rollout-state";
const LAST_GOOD_KEY = "rollout-state.last-good";
// A failed or interrupted publish is retried by an alarm this much later.
const PUBLISH_RETRY_MS = 5000;

export class RolloutObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
    this.doc = undefined; // the committed document (JSON)
    this.degraded = false; // seeded from an unreadable KV document
    this.health = undefined; // merged health record (JSON)
    this.history = undefined; // the last committed changes (JSON)
    this.evidence = undefined; // a harness's verdict and lease for the plan (JSON)
    this.telemetry = undefined; // real users' answers summed over isolates (JSON)
    this.version = 0; // commits since this object started
    this.published = 0; // the version KV holds
    this.lastPublish = -1; // when KV was last written (ms; -1: never)
    this.publishing = false;
    this.retryAt = -1; // when a failed publish is tried again (ms; -1: none)
    this.replicas = undefined; // what each region's replica confirmed (JSON)
    this.pushing = new Set(); // regions with a push in flight
    this.behind = new Set(); // of those, regions committed to again since
    // When this instance started: replicas take its documents over those
    // of an earlier instance (propagation::accepts).
    this.incarnation = Date.now();
    ctx.blockConcurrencyWhile(async () => {
      const [stored, health, published, history, evidence, telemetry] = await Promise.all([
        ctx.storage.get(STORAGE_STATE),
        ctx.storage.get(STORAGE_HEALTH),
        ctx.storage.get(STORAGE_PUBLISHED),
        ctx.storage.get(STORAGE_HISTORY),
        ctx.storage.get(STORAGE_EVIDENCE),
        ctx.storage.get(STORAGE_TELEMETRY),
      ]);
      let kvDoc;
      let kvBackup;
      if (stored === undefined) {
        // First start (or a deployment from before this object): take over
        // what KV holds. KV can lag here by its propagation window; the
        // object's own storage is authoritative from the first change on.
        const kv = env.GREENLIGHT_STATE;
        [kvDoc, kvBackup] = await Promise.all([
          kv.get(STATE_KEY, { cacheTtl: 30 }).catch(() => null),
          kv.get(LAST_GOOD_KEY, { cacheTtl: 30 }).catch(() => null),
        ]);
      }
      const seed = wasm.objectSeed(env, stored, kvDoc ?? undefined, kvBackup ?? undefined);
      const nl = seed.indexOf("\n");
      this.degraded = seed.slice(0, nl) === "1";
      this.doc = seed.slice(nl + 1);
      this.health = health;
      this.history = history;
      this.evidence = evidence;
      this.telemetry = telemetry;
      // Storage holds a document KV may not have yet (the object stopped
      // before publishing it): the alarm set with that change publishes it.
      if (stored !== undefined && published === false) {
        this.version = 1;
        this.retryAt = Date.now();
      }
      // A started object does not know what the replicas hold: it pushes
      // its document to all of them (a replica takes a later instance's
      // document over the one it holds, even at a lower epoch).
      this.pushAll(wasm.replicasCommitted(env, this.replicas, this.doc, Date.now()));
    });
  }

  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/admin") {
      const body = new Uint8Array(await request.arrayBuffer());
      // From here to the storage write: no await, so no other call runs.
      const answer = wasm.objectChange(
        this.env,
        request.headers.get("x-greenlight-call") ?? "",
        body,
        this.doc,
        this.degraded,
        this.health,
        this.history,
        this.evidence,
        this.telemetry,
        this.replicas,
        Date.now(),
      );
      const { status, body: reply } = this.commit(answer);
      return new Response(reply, { status });
    }
    if (path === "/health") {
      const merged = wasm.objectHealth(this.health, await request.text(), this.doc);
      if (merged !== undefined) {
        this.health = merged;
        this.ctx.storage.put(STORAGE_HEALTH, merged);
        // A running plan fails at once on an unhealthy candidate.
        this.planTick();
      }
      return new Response(null, { status: 204 });
    }
    if (path === "/telemetry") {
      const merged = wasm.objectTelemetry(this.telemetry, await request.text());
      if (merged !== undefined) {
        this.telemetry = merged;
        this.ctx.storage.put(STORAGE_TELEMETRY, merged);
      }
      return new Response(null, { status: 204 });
    }
    if (path === "/document") {
      return new Response(this.doc, {
        headers: {
          "x-greenlight-degraded": this.degraded ? "1" : "0",
          "x-greenlight-incarnation": String(this.incarnation),
        },
      });
    }
    return new Response("not found", { status: 404 });
  }

  // Takes an answer of the core (<status>\n<committed>\n<history>\n
  // <evidence>\n<body>, object::ObjectAnswer) and, when it committed a
  // change, stores and publishes it. Synchronous up to the storage write,
  // so nothing runs between the core reading this.doc and its replacement.
  commit(answer) {
    const cut = [];
    let at = -1;
    for (let i = 0; i < 4; i++) {
      at = answer.indexOf("\n", at + 1);
      cut.push(at);
    }
    const status = Number(answer.slice(0, cut[0]));
    const committed = answer.slice(cut[0] + 1, cut[1]);
    const history = answer.slice(cut[1] + 1, cut[2]);
    const evidence = answer.slice(cut[2] + 1, cut[3]);
    const body = answer.slice(cut[3] + 1);
    if (committed !== "") {
      this.doc = committed;
      this.degraded = false;
      this.version += 1;
      this.history = history;
      // Not awaited: the output gate holds every answer until this write
      // is durable, and a failed write resets the object (its memory
      // with it), so no one is told about a change that was not stored.
      // The state and its history entry are one transactional write.
      this.ctx.storage.put({
        [STORAGE_STATE]: committed,
        [STORAGE_HISTORY]: history,
        [STORAGE_PUBLISHED]: false,
      });
      // The backstop if this object stops before KV holds the change.
      this.retryAt = Date.now() + PUBLISH_RETRY_MS;
      this.pushAll(wasm.replicasCommitted(this.env, this.replicas, committed, Date.now()));
      this.schedule();
      this.publish();
    }
    if (evidence !== "") {
      // A verdict or a lease renewal: no state changed, but it may decide
      // the plan now (a failing verdict, a pass after the dwell) and moves
      // its deadline (the lease).
      this.evidence = evidence;
      this.ctx.storage.put(STORAGE_EVIDENCE, evidence);
      this.planTick();
      this.schedule();
    }
    return { status, body };
  }

  // The plan's change, if one is due now (object::plan_tick).
  planTick() {
    const answer = wasm.objectPlanTick(
      this.env,
      this.doc,
      this.health,
      this.history,
      this.evidence,
      Date.now(),
    );
    if (answer !== undefined) this.commit(answer);
  }

  // One alarm serves a pending publish's retry and the plan's next
  // deadline: set it to the earlier of the two, or clear it.
  schedule() {
    const pending = this.published < this.version ? this.retryAt : -1;
    const at = wasm.objectNextAlarm(this.doc, this.evidence, pending, this.replicas);
    if (at >= 0) this.ctx.storage.setAlarm(at);
    else this.ctx.storage.deleteAlarm();
  }

  // Writes the newest document to KV until KV holds it; one loop at a time.
  async publish() {
    if (this.publishing) return;
    this.publishing = true;
    try {
      for (;;) {
        const delay = wasm.objectPublishDelay(this.version, this.published, this.lastPublish, Date.now());
        if (delay < 0) break;
        if (delay > 0) await sleep(delay);
        const version = this.version;
        const doc = this.doc;
        this.lastPublish = Date.now();
        try {
          // Only a durable change is published: KV must never show a
          // document the object could lose.
          if (this.ctx.storage.sync) await this.ctx.storage.sync();
          await this.env.GREENLIGHT_STATE.put(STATE_KEY, doc);
          // The backup a fresh isolate falls back to if the document above
          // is ever unreadable.
          await this.env.GREENLIGHT_STATE.put(LAST_GOOD_KEY, doc);
          this.published = version;
          if (version === this.version) {
            await this.ctx.storage.put(STORAGE_PUBLISHED, true);
            this.schedule();
          }
        } catch (e) {
          // KV refused (rate limit, outage): the alarm tries again.
          this.retryAt = Date.now() + PUBLISH_RETRY_MS;
          this.schedule();
          break;
        }
      }
    } finally {
      this.publishing = false;
    }
  }

  // Takes the replica record and regions of replicasCommitted or
  // replicasDue (<table>\n<region>...) and pushes the document to those
  // regions' replicas, all at once.
  pushAll(answer) {
    const lines = answer.split("\n");
    this.replicas = lines[0];
    for (const region of lines.slice(1)) this.push(region);
  }

  // Pushes the newest document to one replica; a failure is retried by
  // the alarm, with a back-off (propagation::ReplicaTable). One push per
  // replica at a time: changes committed meanwhile go in one more push,
  // of the newest document, when it is answered.
  async push(region) {
    if (this.pushing.has(region)) {
      this.behind.add(region);
      return;
    }
    this.pushing.add(region);
    try {
      // Only a durable change leaves the object (as with KV).
      if (this.ctx.storage.sync) await this.ctx.storage.sync();
      const resp = await replicaObject(this.env, region).fetch("https://replica/push", {
        method: "POST",
        headers: { "x-greenlight-region": region, "x-greenlight-incarnation": String(this.incarnation) },
        body: this.doc,
      });
      const text = await resp.text();
      if (!resp.ok) throw new Error(`replica answered ${resp.status}: ${text.slice(0, 100)}`);
      this.replicas = wasm.replicaConfirmed(this.replicas, region, Number(text), Date.now());
    } catch (e) {
      this.replicas = wasm.replicaFailed(this.replicas, region, String(e), Date.now());
      this.schedule();
    } finally {
      this.pushing.delete(region);
      if (this.behind.delete(region)) this.push(region);
    }
  }

  async alarm() {
    if (this.published < this.version) await this.publish();
    this.pushAll(wasm.replicasDue(this.replicas, Date.now()));
    this.planTick();
    this.schedule();
  }
}

// A region's read replica of the rollout state: the rollout object pushes
// it every commit; the locations of its region read it (through their
// cache). It keeps the newest document it was given, in memory only: a
// replica that starts again holds nothing and is out of touch, so it pulls
// the object's document before it answers anyway. It also pulls on a read
// when it has heard nothing for a while (it may have been unreachable for
// a push).
export class StateReplica {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
    this.doc = undefined; // the newest document it was given (JSON)
    this.epoch = -1; // its epoch
    this.incarnation = -1; // that of the object instance that gave it
    this.synced = -1; // when the object last pushed or was pulled (ms)
    this.pulling = undefined; // the pull in flight
  }

  // Keeps `doc`, from the object instance `incarnation`, if it replaces
  // the one held (propagation::accepts); returns the epoch held.
  take(doc, incarnation) {
    const epoch = wasm.replicaTakes(this.epoch, this.incarnation, doc, incarnation);
    if (epoch >= 0) {
      this.doc = doc;
      this.epoch = epoch;
      this.incarnation = incarnation;
    }
    return this.epoch;
  }

  pull() {
    if (this.pulling === undefined) {
      this.pulling = (async () => {
        try {
          const resp = await rolloutObject(this.env).fetch("https://rollout/document");
          if (resp.ok) {
            const incarnation = Number(resp.headers.get("x-greenlight-incarnation") ?? 0);
            this.take(await resp.text(), incarnation);
            this.synced = Date.now();
          }
        } catch (e) {
          // The object is unreachable: the next read tries again.
        } finally {
          this.pulling = undefined;
        }
      })();
    }
    return this.pulling;
  }

  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/push") {
      const incarnation = Number(request.headers.get("x-greenlight-incarnation") ?? 0);
      const held = this.take(await request.text(), incarnation);
      this.synced = Date.now();
      return new Response(String(held));
    }
    if (path === "/document") {
      const now = Date.now();
      if (!wasm.replicaFresh(this.synced, now)) {
        // Nothing held, or out of touch with the object for long: the
        // copy may be far behind, so it pulls first, and without an
        // answer from the object it answers 503 (the location then reads
        // KV and says so) rather than serve that copy.
        await this.pull();
        if (this.doc === undefined || !wasm.replicaFresh(this.synced, Date.now())) {
          return new Response("replica out of touch with the rollout object", { status: 503 });
        }
      } else if (wasm.replicaResyncDue(this.synced, now)) {
        // Not awaited: this read is answered with what is held.
        this.pull();
      }
      return new Response(this.doc);
    }
    return new Response("not found", { status: 404 });
  }
}
