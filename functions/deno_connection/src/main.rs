//! Lambda function for `PUT|GET|DELETE /connections/deno`; the logic lives in
//! `deno_sandbox_tools::connections`.

use deno_sandbox_tools::{bootstrap, connections};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    bootstrap::run(connections::handle_http).await
}
