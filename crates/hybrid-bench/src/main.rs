//! `hybrid-bench`: see the crate documentation (src/lib.rs) and
//! docs/performance.md.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hybrid_bench::ceremony::{self, CeremonyOptions, Contender, PhoneChecks};
use hybrid_bench::report::{machine, table, Column, Metric, RunResult};
use hybrid_bench::server::{Server, ServerSpec};
use hybrid_bench::tunnel::{self, PairClient, Target, TunnelOptions};
use hybrid_bench::BenchError;
use hybrid_initiator::{AttestationPolicy, UserVerification};
use hybrid_tunnel::server::raise_descriptor_limit;

#[derive(Debug, Parser)]
#[command(
    name = "hybrid-bench",
    about = "Load generators for hybridd's components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load caBLE tunnel servers on loopback and print their numbers side by
    /// side (docs/performance.md).
    Tunnel(TunnelArgs),
    /// Run whole ceremonies against phones (`hybridd run`, another phone
    /// command) and print their numbers side by side (docs/performance.md).
    Ceremony(CeremonyArgs),
}

#[derive(Debug, clap::Args)]
struct CeremonyArgs {
    /// A phone to measure, as NAME=COMMAND (repeat for a side-by-side
    /// table; ratios are against the last one). Placeholders: {tunnel}
    /// {advert} {socket} {vault} {pin} {dir}; a command with {socket} is
    /// driven as hybridd (control socket), any other by stdin/stdout lines
    /// (see crates/hybrid-bench/src/phone.rs). Runs under
    /// `sh -c 'exec env COMMAND'`. Default: the `hybridd` next to this
    /// binary.
    #[arg(long = "phone", value_name = "NAME=COMMAND")]
    phones: Vec<ServerSpec>,
    /// A phone (by NAME) that does no user verification: our desktop sends
    /// its requests without `uv` and accepts answers without the UV flag
    /// (rpIdHash, UP, attestation, signature and counter are still
    /// checked). Default for every phone: UV asked for and required.
    #[arg(long = "uv-discouraged", value_name = "NAME")]
    uv_discouraged: Vec<String>,
    /// A phone (by NAME) whose `packed` attestation may carry a certificate
    /// (`x5c`; signature checked with its key, chain not evaluated).
    /// Default for every phone: self attestation or `none` only.
    #[arg(long = "attestation-certificate", value_name = "NAME")]
    attestation_certificate: Vec<String>,
    /// Measured ceremonies per run (makeCredential and getAssertion alternate).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    ceremonies: u64,
    /// Ceremonies before the measured ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Runs; the table shows medians. Every run starts all the phones
    /// afresh.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Measured ceremonies a phone runs before the next phone takes its
    /// turn: the phones of a run are set up side by side and take turns, so
    /// that a change in the host's load falls on all of them alike (a
    /// phone's CPU is counted over its own turns). `--turn` equal to
    /// `--ceremonies` runs the phones one after the other.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    turn: u64,
    /// Seconds one ceremony may take.
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// Seconds to wait before the idle and the after memory readings.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Exit with status 1 (after printing the table) when any phone had
    /// more failed ceremonies than this in a run (e.g. 0 for a smoke test).
    #[arg(long, value_name = "N")]
    max_failures: Option<u64>,
}

/// `hybridd run` next to this binary, with the timing log on.
fn default_phone() -> Result<ServerSpec, BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "finding this program",
        source,
    })?;
    let hybridd = exe.with_file_name("hybridd");
    Ok(ServerSpec {
        name: "hybridd".into(),
        command: format!(
            "RUST_LOG=info,hybridd::timing=debug NO_COLOR=1 {} run --vault {{vault}} \
             --socket {{socket}} --tunnel-url {{tunnel}} --advert-file {{advert}} \
             --approval auto --pin-file {{pin}}",
            hybridd.display()
        ),
    })
}

async fn run_ceremony(args: CeremonyArgs) -> Result<(), BenchError> {
    let opts = CeremonyOptions {
        ceremonies: usize::try_from(args.ceremonies).unwrap_or(usize::MAX),
        warmup: args.warmup.min(100),
        timeout: secs(args.timeout, "--timeout")?,
        settle: secs(args.settle, "--settle")?,
        turn: usize::try_from(args.turn).unwrap_or(usize::MAX),
    };
    let phones = if args.phones.is_empty() {
        vec![default_phone()?]
    } else {
        args.phones
    };
    for name in args
        .uv_discouraged
        .iter()
        .chain(&args.attestation_certificate)
    {
        if !phones.iter().any(|p| &p.name == name) {
            return Err(BenchError::Options(format!("no --phone named {name:?}")));
        }
    }
    let checks = |name: &str| PhoneChecks {
        user_verification: if args.uv_discouraged.iter().any(|n| n == name) {
            UserVerification::Discouraged
        } else {
            UserVerification::Required
        },
        attestation: if args.attestation_certificate.iter().any(|n| n == name) {
            AttestationPolicy::Certificate
        } else {
            AttestationPolicy::SelfOnly
        },
    };
    let contenders: Vec<Contender> = phones
        .iter()
        .map(|spec| Contender {
            spec: spec.clone(),
            checks: checks(&spec.name),
        })
        .collect();
    let mut columns = columns(&phones);
    let runs = args.runs.clamp(1, 100);
    for run in 0..runs {
        eprintln!(
            "[bench] run {}/{runs}: {} in turns of {} ceremonies",
            run + 1,
            phones
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            opts.turn.min(opts.ceremonies)
        );
        // Each run sets the phones up in the next rotation of their order.
        let results = ceremony::run(&contenders, &opts, run).await?;
        for ((spec, column), result) in phones.iter().zip(columns.iter_mut()).zip(results) {
            eprintln!("[bench] run {}/{runs}: {}", run + 1, spec.name);
            record(column, result);
        }
    }
    println!("Machine: {}", machine());
    println!(
        "Load: {} ceremonies per run (makeCredential and getAssertion alternate) after {} warm-up, \
         one at a time, the phones taking turns of {} ceremonies, a loopback tunnel server in the \
         benchmark for each, file radio, automatic approval, throwaway vault with the cheapest KDF",
        opts.ceremonies,
        opts.warmup,
        opts.turn.min(opts.ceremonies)
    );
    for spec in &phones {
        let c = checks(&spec.name);
        if c != PhoneChecks::default() {
            println!(
                "Checks for {}: user verification {:?}, attestation {:?} (others: UV required, \
                 self attestation)",
                spec.name, c.user_verification, c.attestation
            );
        }
    }
    println!();
    finish(&columns, args.max_failures)
}

/// One empty column per phone or server, in order.
fn columns<M>(specs: &[ServerSpec]) -> Vec<Column<M>> {
    specs
        .iter()
        .map(|s| Column {
            name: s.name.clone(),
            runs: Vec::new(),
        })
        .collect()
}

/// Shows one run's numbers on stderr and adds them to its column.
fn record<M: Metric>(column: &mut Column<M>, result: RunResult<M>) {
    eprintln!(
        "[bench]   {}",
        result
            .metrics
            .iter()
            .map(|(m, v)| format!("{}={v:.1}", m.label()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    column.runs.push(result);
}

/// Prints the table; an error (after it) when a run had more failures
/// than `max_failures`.
fn finish<M: Metric>(columns: &[Column<M>], max_failures: Option<u64>) -> Result<(), BenchError> {
    print!("{}", table(columns));
    if let Some(max) = max_failures {
        let worst = columns
            .iter()
            .flat_map(|c| c.runs.iter().map(|r| r.failures.total()))
            .max()
            .unwrap_or(0);
        if worst > max {
            return Err(BenchError::Options(format!(
                "{worst} failures in a run, more than --max-failures {max}"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct TunnelArgs {
    /// A server to measure, as NAME=COMMAND (repeat for a side-by-side
    /// table; ratios are against the last one). `{port}` in COMMAND becomes
    /// a free port on 127.0.0.1; without it the first `ws://HOST:PORT` the
    /// command prints is used. Runs under `sh -c 'exec env COMMAND'`.
    #[arg(long = "server", value_name = "NAME=COMMAND", required = true)]
    servers: Vec<ServerSpec>,
    /// Runs per server (servers alternate); the table shows medians.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Tunnels held open in the memory phase (0 skips it).
    #[arg(long, default_value_t = 9_950)]
    tunnels: usize,
    /// Tunnels opened per second at most.
    #[arg(long, default_value_t = 2_000)]
    open_rate: u32,
    /// Tunnel openings in flight at most.
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
    /// Tunnels carrying the relay phase (0 skips it).
    #[arg(long, default_value_t = 1_000)]
    relay_tunnels: usize,
    /// Round trips per second, open loop.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Seconds of the relay phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Relay message size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Workers of the pairs phase (0 skips it).
    #[arg(long, default_value_t = 32)]
    pair_workers: usize,
    /// Seconds of the pairs phase.
    #[arg(long, default_value_t = 5.0)]
    pair_duration: f64,
    /// Generator threads of the pairs phase (the workers spread over them;
    /// one thread is the bottleneck, docs/performance.md).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pair_threads: u16,
    /// WebSocket client of the pairs phase: `lean` (ours, minimal: the
    /// generator costs less than the server per pair) or `tungstenite`
    /// (docs/performance.md).
    #[arg(long, value_enum, default_value_t = PairClient::Lean)]
    pair_client: PairClient,
    /// Source addresses 127.0.0.1 to 127.0.0.N.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=254))]
    sources: u8,
    /// Seconds to wait before each memory reading.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Seconds to wait after all tunnels closed before the last memory reading.
    #[arg(long, default_value_t = 5.0)]
    after_close: f64,
    /// Exit with status 1 (after printing the table) when any server had
    /// more failures than this in a run (e.g. 0 for a smoke test).
    #[arg(long, value_name = "N")]
    max_failures: Option<u64>,
}

fn secs(s: f64, what: &str) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| *d <= Duration::from_secs(3600))
        .ok_or_else(|| BenchError::Options(format!("{what} must be 0..=3600 seconds")))
}

impl TunnelArgs {
    fn options(&self) -> Result<TunnelOptions, BenchError> {
        Ok(TunnelOptions {
            tunnels: self.tunnels,
            open_rate: self.open_rate,
            open_concurrency: self.open_concurrency,
            relay_tunnels: self.relay_tunnels,
            rate: self.rate,
            duration: secs(self.duration, "--duration")?,
            size: self.size,
            pair_workers: self.pair_workers,
            pair_duration: secs(self.pair_duration, "--pair-duration")?,
            pair_threads: usize::from(self.pair_threads),
            pair_client: self.pair_client,
            sources: self.sources,
            settle: secs(self.settle, "--settle")?,
            after_close: secs(self.after_close, "--after-close")?,
            ..TunnelOptions::default()
        })
    }
}

async fn run_tunnel(args: TunnelArgs) -> Result<(), BenchError> {
    let opts = args.options()?;
    let nofile = raise_descriptor_limit().unwrap_or(u64::MAX);
    let needed = 2 * opts.tunnels.max(opts.relay_tunnels) as u64 + 64;
    if nofile < needed {
        return Err(BenchError::Options(format!(
            "{} tunnels need {needed} open files here (and as many in the server); \
             the limit is {nofile}: lower --tunnels or raise `ulimit -n`",
            opts.tunnels.max(opts.relay_tunnels)
        )));
    }
    let mut columns = columns(&args.servers);
    let runs = args.runs.max(1);
    for run in 0..runs {
        for (spec, column) in args.servers.iter().zip(columns.iter_mut()) {
            eprintln!("[bench] run {}/{runs}: {}", run + 1, spec.name);
            let server = Server::start(spec).await?;
            let target = Target {
                addr: server.addr,
                pid: server.pid,
            };
            let result = tunnel::run(target, &opts).await;
            server.stop().await;
            record(column, result?);
        }
    }
    println!("Machine: {}", machine());
    println!(
        "Load: {} tunnels held; relay {} B echo, {} tunnels, {} round trips/s for {:?}; \
         pairs with {} workers on {} threads for {:?}; sources 127.0.0.1-{}\n",
        opts.tunnels,
        opts.size,
        opts.relay_tunnels,
        opts.rate,
        opts.duration,
        opts.pair_workers,
        opts.pair_threads,
        opts.pair_duration,
        opts.sources
    );
    finish(&columns, args.max_failures)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: the generator's own cost stays on one core, the same for
    // every server measured.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hybrid-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Tunnel(args) => rt.block_on(run_tunnel(args)),
        Command::Ceremony(args) => rt.block_on(run_ceremony(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hybrid-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
