// What serve-direct.mjs and serve-locations.mjs share: their flags and
// their shutdown. Local development and tests only.

// `--flag value` pairs into an object: `names` maps each flag to its key,
// `defaults` gives the keys' values when absent, `required` the flags that
// must be given.
export function parseFlags(argv, names, defaults, required) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (key === undefined || argv[i + 1] === undefined) {
      throw new Error(`unknown or incomplete argument ${argv[i]}`);
    }
    out[key] = argv[i + 1];
  }
  const missing = required.filter((flag) => !out[names[flag]]);
  if (missing.length > 0) {
    throw new Error(`${required.join(", ")} are required (missing ${missing.join(", ")})`);
  }
  return out;
}

// Disposes of workerd (Miniflare `mf`) on SIGTERM or SIGINT, then exits.
export function stopOnSignals(mf) {
  let stopping = false;
  async function stop() {
    if (stopping) return;
    stopping = true;
    await mf.dispose();
    process.exit(0);
  }
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
