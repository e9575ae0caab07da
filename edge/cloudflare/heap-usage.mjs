#!/usr/bin/env node
// Prints the JS heap of each isolate behind a V8 inspector (workerd's, as
// served by `serve-direct.mjs --inspector-port P`) as one JSON line:
// [{"title", "used", "total"}] in bytes, after a full garbage collection
// when `--gc` is given (so what is left is what the isolate still holds).
//
//   node heap-usage.mjs --port P [--gc]
import WebSocket from "ws";

const argv = process.argv.slice(2);
const at = argv.indexOf("--port");
const port = at >= 0 ? Number(argv[at + 1]) : NaN;
if (!Number.isInteger(port)) {
  console.error("usage: heap-usage.mjs --port P [--gc]");
  process.exit(2);
}
const gc = argv.includes("--gc");

function call(url, calls) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const answers = new Map();
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer from ${url} within 10 s`));
    }, 10_000);
    ws.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    ws.on("open", () => {
      calls.forEach((method, i) => ws.send(JSON.stringify({ id: i + 1, method })));
    });
    ws.on("message", (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.id === undefined) return;
      answers.set(msg.id, msg.result ?? { error: msg.error });
      // workerd never answers HeapProfiler.collectGarbage; calls run in
      // order, so the last one's answer comes after the collection.
      if (msg.id === calls.length) {
        clearTimeout(timer);
        ws.close();
        resolve(calls.map((_, i) => answers.get(i + 1)));
      }
    });
  });
}

const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const out = [];
for (const t of targets) {
  if (!t.webSocketDebuggerUrl) continue;
  const calls = gc
    ? ["HeapProfiler.collectGarbage", "Runtime.getHeapUsage"]
    : ["Runtime.getHeapUsage"];
  const answers = await call(t.webSocketDebuggerUrl, calls);
  const usage = answers[answers.length - 1] ?? {};
  out.push({ title: t.title, used: usage.usedSize, total: usage.totalSize });
}
console.log(JSON.stringify(out));
