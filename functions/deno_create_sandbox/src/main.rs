//! Lambda function for the `deno_create_sandbox` tool; the logic lives in `deno_sandbox_tools::tools`.

use deno_sandbox_tools::bootstrap;
use deno_sandbox_tools::tools::{self, Tool};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    bootstrap::run(|app, request| tools::handle_http(app, Tool::CreateSandbox, request)).await
}
