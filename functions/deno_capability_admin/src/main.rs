//! Lambda function for `PUT|GET /admin/orgs/{org_id}/capabilities/deno`; the logic lives in
//! `deno_sandbox_tools::capability`.

use deno_sandbox_tools::{bootstrap, capability};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    bootstrap::run(capability::handle_http).await
}
