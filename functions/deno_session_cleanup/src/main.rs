//! Lambda function for `DELETE /sessions/{session_id}/sandboxes`: deletes every sandbox of a
//! session when the platform ends it. The logic lives in `deno_sandbox_tools::tools`.

use deno_sandbox_tools::{bootstrap, tools};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    bootstrap::run(tools::handle_session_cleanup).await
}
