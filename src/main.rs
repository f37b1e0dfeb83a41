//! The `sessiond` binary: parse the command line and run it. Everything else is the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match sessiond::cli::main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
