//! The least a Spin component in front of an origin can do: same method,
//! path, headers and body, sent to the origin in the `origin` variable.

use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

#[http_service]
async fn handle(mut req: Request) -> impl IntoResponse {
    let origin = spin_sdk::variables::get("origin").await.unwrap_or_default();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{origin}{path}").parse() else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    *req.uri_mut() = uri;
    spin_sdk::http::send(req).await.into_response()
}
