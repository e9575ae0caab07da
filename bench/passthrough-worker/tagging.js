// A second reference point for bench/edge-overhead: a pass-through that, like
// greenlight, must copy the origin's response to add a header (fetched
// responses are immutable). Shows how much of the overhead is that copy.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const resp = await fetch(env.ORIGIN + url.pathname + url.search, request);
    const out = new Response(resp.body, resp);
    out.headers.set("x-greenlight-color", "blue");
    return out;
  },
};
