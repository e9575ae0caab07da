//! The least a Spin component in front of an origin can do: same method,
//! path, headers and body, sent to the origin in the `origin` variable, the
//! answer streamed back. The baseline of `bench/edge-overhead` under the
//! same `spin up` as greenlight.

use futures::{SinkExt, StreamExt};
use spin_sdk::http::{
    Fields, IncomingRequest, IncomingResponse, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let origin = spin_sdk::variables::get("origin").unwrap_or_default();
    let authority = origin.trim_start_matches("http://").trim_end_matches('/');
    let headers: Vec<(String, Vec<u8>)> = req
        .headers()
        .entries()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("spin-") && k != "host")
        .collect();
    let Ok(fields) = Fields::from_list(&headers) else {
        return fail(out, 400).await;
    };
    let request = OutgoingRequest::new(fields);
    let _ = request.set_method(&req.method());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(req.path_with_query().as_deref());
    let resp: IncomingResponse = match spin_sdk::http::send(request).await {
        Ok(resp) => resp,
        Err(_) => return fail(out, 502).await,
    };
    let Ok(fields) = Fields::from_list(&resp.headers().entries()) else {
        return fail(out, 502).await;
    };
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(resp.status());
    let mut sink = response.take_body();
    out.set(response);
    let mut body = resp.take_body_stream();
    while let Some(Ok(chunk)) = body.next().await {
        if sink.send(chunk).await.is_err() {
            return;
        }
    }
}

async fn fail(out: ResponseOutparam, status: u16) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let _ = out.set_with_body(response, Vec::new()).await;
}
