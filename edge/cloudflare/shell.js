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

// The origin timeout (ORIGIN_TIMEOUT_MS) covers the time the edge waits on
// the origin, and only until its response headers arrive: connecting, taking
// the request body, answering. It is paused while the edge waits on the
// client's upload (a slow client is not a failing origin), restarts with
// every chunk the origin is handed, and stops for good with the headers,
// so a body then streams at the origin's pace. (AbortSignal.timeout would
// also count a slow upload.)
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
    pause() {
      clearTimeout(timer);
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// The client's body stream as the origin's, pumped here so the timer knows
// whom the edge is waiting on. A known length stays known (no chunking).
function timedBody(body, length, timer) {
  const { readable, writable } =
    Number.isSafeInteger(length) && length >= 0
      ? new FixedLengthStream(length)
      : new TransformStream();
  const pump = async () => {
    const reader = body.getReader();
    const writer = writable.getWriter();
    try {
      for (;;) {
        timer.pause(); // waiting on the client
        const { done, value } = await reader.read();
        timer.run(); // waiting on the origin
        if (done) break;
        await writer.write(value);
      }
      await writer.close();
    } catch (e) {
      writer.abort(e).catch(() => {});
      reader.cancel(e).catch(() => {});
    }
  };
  pump();
  return readable;
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

// reply\n<status>\n<header count>\n<headers...>\n<body>
function replyFrom(step) {
  const fields = step.split("\n");
  const end = 3 + 2 * Number(fields[2]);
  return new Response(fields.slice(end).join("\n"), {
    status: Number(fields[1]),
    headers: headersFrom(fields, 3, end),
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
      await wasm.loadEdge(env);
      step = wasm.beginRequest(head, Date.now(), hi, lo, true, []);
    }
    if (step === "admin") {
      return replyFrom(await wasm.admin(head, request, env));
    }
    let buffered; // a body kept for a retry
    let response; // the last origin response
    for (;;) {
      if (step.startsWith("persist\n")) {
        ctx.waitUntil(wasm.persistHealth(env));
        step = step.slice("persist\n".length);
      }
      const kind = step.slice(0, step.indexOf("\n"));
      if (kind === "forward") {
        // forward\n<id>\n<method>\n<url>\n<timeout ms>\n<body>\n
        // <deliver below>\n<request delta>\n<response delta>
        const fields = step.split("\n");
        const id = Number(fields[1]);
        const timer = originTimer(Number(fields[4]));
        let body;
        if (fields[5] === "buffer") {
          buffered ??= await request.arrayBuffer();
          body = buffered;
        } else if (fields[5] === "stream" && request.body !== null) {
          const length = request.headers.get("content-length");
          body = timedBody(request.body, length === null ? null : Number(length), timer);
        }
        const headers = new Headers(request.headers);
        const responseDeltaAt = applyDelta(headers, fields, 7);
        const started = Date.now();
        let report;
        timer.run();
        try {
          response = await fetch(fields[3], {
            method: fields[2],
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
          if (status >= 200 && status < Number(fields[6]) && !response.headers.has("connection")) {
            // The answer Rust said in advance it would pass on this way.
            finished.push(id);
            return rewrap(response, response.status, fields, responseDeltaAt);
          }
          report = response.status + "\n" + headerLines(response.headers);
        }
        step = wasm.afterAttempt(id, report, started, Date.now());
      } else if (kind === "deliver") {
        // deliver\n<status>\n<response delta>
        const fields = step.split("\n");
        return rewrap(response, Number(fields[1]), fields, 2);
      } else if (kind === "reply") {
        return replyFrom(step);
      } else {
        // Cannot happen: every step Rust returns is one of the above.
        return new Response(`unexpected edge step ${kind}`, { status: 502 });
      }
    }
  },
};
