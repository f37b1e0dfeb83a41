use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = sessiond::cli::Cli::parse();
    match sessiond::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
