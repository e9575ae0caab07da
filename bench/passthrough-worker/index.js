// The baseline for bench/edge-overhead: the least a Worker in front of an
// origin can do. Same path, method, headers and body; no auth, no routing.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.ORIGIN + url.pathname + url.search, request);
  },
};
