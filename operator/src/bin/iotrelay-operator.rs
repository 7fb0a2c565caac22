//! The operator binary: see `iotrelay_operator::run`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = iotrelay_operator::run::Settings::from_env()?;
    iotrelay_operator::run::init_logging(settings.log_json);
    iotrelay_operator::run::run(settings).await
}
