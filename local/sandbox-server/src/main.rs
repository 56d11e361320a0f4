//! Local stand-in for Deno Deploy's sandbox service.

fn main() {
    eprintln!("deno-sandbox-local: not built yet");
    std::process::exit(1);
}
