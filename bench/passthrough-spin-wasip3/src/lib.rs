//! The least a WASIp3 Spin component in front of an origin can do: same
//! method, path, headers and body, sent to the origin in the `origin`
//! variable (read once per instance), the answer's body and trailers handed
//! back as the streams they are. The baseline of `bench/edge-overhead` for
//! greenlight's WASIp3 build, under the same `spin up`.

use spin_sdk::wasip3::http::client;
use spin_sdk::wasip3::http::types::{ErrorCode, Fields, Request, Response, Scheme};
use spin_sdk::wasip3::wit_future;
use std::cell::RefCell;

thread_local! {
    static ORIGIN: RefCell<Option<String>> = const { RefCell::new(None) };
}

struct Component;
spin_sdk::wasip3::http::service::export!(Component);

impl spin_sdk::wasip3::exports::http::handler::Guest for Component {
    async fn handle(req: Request) -> Result<Response, ErrorCode> {
        let origin = match ORIGIN.with_borrow(Clone::clone) {
            Some(origin) => origin,
            None => {
                let origin = spin_sdk::variables::get("origin").await.unwrap_or_default();
                ORIGIN.set(Some(origin.clone()));
                origin
            }
        };
        let authority = origin.trim_start_matches("http://").trim_end_matches('/');
        let headers: Vec<(String, Vec<u8>)> = req
            .get_headers()
            .copy_all()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("spin-") && k != "host")
            .collect();
        let fields = Fields::from_list(&headers).map_err(|_| ErrorCode::HttpRequestDenied)?;
        let method = req.get_method();
        let path = req.get_path_with_query();
        let (_, done) = wit_future::new(|| Ok(()));
        let (body, trailers) = Request::consume_body(req, done);
        let (out, _) = Request::new(fields, Some(body), trailers, None);
        let _ = out.set_method(&method);
        let _ = out.set_scheme(Some(&Scheme::Http));
        let _ = out.set_authority(Some(authority));
        let _ = out.set_path_with_query(path.as_deref());
        let resp = client::send(out).await?;
        let status = resp.get_status_code();
        let fields = resp.get_headers().clone();
        let (_, done) = wit_future::new(|| Ok(()));
        let (body, trailers) = Response::consume_body(resp, done);
        let (answer, _) = Response::new(fields, Some(body), trailers);
        let _ = answer.set_status_code(status);
        Ok(answer)
    }
}
