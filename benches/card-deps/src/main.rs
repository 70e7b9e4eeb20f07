//! Touches each dependency once so that all of them are really compiled and linked.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "CARD_URL", default_value = "http://127.0.0.1:4200/api/health")]
    url: String,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Doc {
    name: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let doc: Doc = serde_yaml::from_str("name: card")?;
    println!("{}", serde_json::to_string(&doc)?);
    let shell = xshell::Shell::new()?;
    let _ = which::which("sh");
    let _ = xshell::cmd!(shell, "true").quiet().run();
    let _ = reqwest::blocking::Client::new().get(&args.url).send();
    Ok(())
}
