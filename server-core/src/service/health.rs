//! Federation health, for the tray and the dashboard. Two signals make it: the
//! connectivity checker pointed at this server's own name (the self-check, at start and
//! every few hours; with an external tester when one is configured), and outbound delivery
//! per destination from the federation sender ("matrix.org has not accepted our
//! transactions for 2 h"). The result is `ok`, `degraded` or `failing` with a one-line
//! summary, kept for the status API and broadcast to whoever listens.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use tokio::sync::broadcast;

use super::{
    checker::{
        Checker, CheckerOptions,
        report::{ExternalResult, Report, Verdict},
    },
    federation::Federation,
};
use crate::{
    config::Config,
    error::{Error, Result},
    storage::DestinationHealth,
};

/// A destination that has had nothing accepted for this long, with items waiting, makes
/// federation degraded.
pub const STUCK_AFTER: Duration = Duration::from_secs(2 * 3600);

/// The overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Federation works.
    Ok,
    /// It works, but something needs attention.
    Degraded,
    /// Other servers cannot reach this one.
    Failing,
}

/// A destination that does not take what is sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StuckDestination {
    /// The server name.
    pub destination: String,
    /// When it last accepted a transaction (ms), if ever.
    pub last_success_ts: Option<i64>,
    /// Items waiting for it.
    pub queued: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// One sentence for the user.
    pub message: String,
}

/// The latest federation health.
#[derive(Debug, Clone, Serialize)]
pub struct FederationHealth {
    /// `ok`, `degraded` or `failing`.
    pub state: HealthState,
    /// One line for the tray: "federation OK", or what is wrong first.
    pub summary: String,
    /// When (ms since the epoch).
    pub checked_at: i64,
    /// The self-check's report.
    pub report: Report,
    /// Destinations that have not accepted anything for [`STUCK_AFTER`].
    pub stuck: Vec<StuckDestination>,
}

/// The destinations that have items waiting and have accepted nothing for [`STUCK_AFTER`]
/// (or never, after failures).
pub fn stuck_destinations(all: &[DestinationHealth], now_ms: i64) -> Vec<StuckDestination> {
    let limit = i64::try_from(STUCK_AFTER.as_millis()).unwrap_or(i64::MAX);
    all.iter()
        .filter(|d| d.queued > 0 && d.failures > 0)
        .filter_map(|d| {
            let message = match d.last_success_ts {
                Some(ts) if now_ms - ts >= limit => format!(
                    "{} has not accepted our transactions for {} h",
                    d.destination,
                    (now_ms - ts) / 3_600_000
                ),
                Some(_) => return None,
                None => {
                    // Never accepted: the sender waits 5 s after the first failure, doubling
                    // up to an hour, so 11 failures in a row span more than 2 hours.
                    if d.failures < 11 {
                        return None;
                    }
                    format!(
                        "{} has never accepted our transactions ({} attempts failed)",
                        d.destination, d.failures
                    )
                }
            };
            Some(StuckDestination {
                destination: d.destination.clone(),
                last_success_ts: d.last_success_ts,
                queued: d.queued,
                last_error: d.last_error.clone(),
                message,
            })
        })
        .collect()
}

/// The state and summary line from a self-check and the stuck destinations.
pub fn evaluate(report: &Report, stuck: &[StuckDestination]) -> (HealthState, String) {
    match report.verdict {
        Verdict::Failing => {
            let first = report
                .problems
                .first()
                .map_or_else(|| "no address answered".to_owned(), |p| p.message.clone());
            (HealthState::Failing, format!("federation failing: {first}"))
        }
        Verdict::Degraded => {
            let first = report
                .warnings
                .first()
                .map(|w| w.message.clone())
                .unwrap_or_default();
            (
                HealthState::Degraded,
                format!("federation degraded: {first}"),
            )
        }
        Verdict::Ok => match stuck.first() {
            Some(stuck) => (
                HealthState::Degraded,
                format!("federation degraded: {}", stuck.message),
            ),
            None => (HealthState::Ok, "federation OK".to_owned()),
        },
    }
}

/// Federation health. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    /// How checkers are made, or why they cannot be. A checker is made per check and
    /// dropped after it: the trusted roots it loads need not stay in memory for hours.
    options: std::result::Result<CheckerOptions, String>,
    federation: Federation,
    server_name: String,
    external_tester: Option<String>,
    enabled: bool,
    interval: Option<Duration>,
    last: Mutex<Option<FederationHealth>>,
    events: broadcast::Sender<FederationHealth>,
}

impl Health {
    /// Reads the checker's settings from the config. A CA file that cannot be read is
    /// reported by every check rather than stopping the server.
    pub fn new(config: &Config, federation: Federation) -> Self {
        let extra_roots_pem = if config.checker.ca_file.is_empty() {
            Ok(None)
        } else {
            std::fs::read(&config.checker.ca_file)
                .map(Some)
                .map_err(|e| format!("cannot read checker.ca_file: {e}"))
        };
        let options = extra_roots_pem.map(|extra_roots_pem| CheckerOptions {
            dns_server: config.checker.dns_server_addr(),
            extra_roots_pem,
            timeout: Duration::ZERO,
        });
        let hours = u64::from(config.checker.self_check_hours);
        let tester = config.checker.external_tester_url.trim_end_matches('/');
        Self {
            inner: Arc::new(Inner {
                options,
                federation,
                server_name: config.server_name.clone(),
                external_tester: (!tester.is_empty()).then(|| tester.to_owned()),
                enabled: !config.listen.federation.is_empty(),
                interval: (hours > 0).then(|| Duration::from_secs(hours * 3600)),
                last: Mutex::new(None),
                events: broadcast::channel(16).0,
            }),
        }
    }

    /// Whether the server federates (a federation listener is configured), so that
    /// self-checks make sense.
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Time between self-checks, if they repeat.
    pub fn interval(&self) -> Option<Duration> {
        self.inner.interval
    }

    /// A checker, made on a blocking thread: it reads the system's trusted roots and DNS
    /// configuration from disk.
    async fn checker(&self) -> Result<Checker> {
        let options = self.inner.options.clone().map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || Checker::new(&options))
            .await
            .map_err(Error::internal)?
            .map_err(Error::internal)
    }

    /// Checks any server name (the admin API's check).
    pub async fn check(&self, server_name: &str) -> Result<Report> {
        Ok(self.checker().await?.check(server_name).await)
    }

    /// Runs the self-check now: this server's own name, the external tester if configured,
    /// and the outbound deliveries. Keeps and broadcasts the result.
    pub async fn check_now(&self) -> Result<FederationHealth> {
        let mut report = self.checker().await?.check(&self.inner.server_name).await;
        match &self.inner.external_tester {
            Some(url) => {
                let external = ask_external(url, &self.inner.server_name).await;
                if external.federation_ok == Some(false) {
                    report.problem(
                        "external tester",
                        format!("the federation tester at {url} cannot federate with this server"),
                        "servers on the internet do not see what this machine sees: check the \
                         port forwarding on your router, and that public DNS has the same \
                         records as your local network",
                    );
                }
                if let Some(error) = &external.error {
                    report.notes.push(format!(
                        "the federation tester at {url} did not answer: {error}"
                    ));
                }
                report.external = Some(external);
                report.conclude();
            }
            None => report.notes.push(
                "this check ran on the server's own machine: a router that loops connections \
                 back (hairpin NAT) or local DNS answers can make it pass while servers on \
                 the internet fail; set checker.external_tester_url for the view from outside"
                    .to_owned(),
            ),
        }
        let now = report.checked_at;
        let destinations = self.inner.federation.destination_health().await?;
        let stuck = stuck_destinations(&destinations, now);
        let (state, summary) = evaluate(&report, &stuck);
        let health = FederationHealth {
            state,
            summary,
            checked_at: now,
            report,
            stuck,
        };
        if let Ok(mut last) = self.inner.last.lock() {
            *last = Some(health.clone());
        }
        let _ = self.inner.events.send(health.clone());
        Ok(health)
    }

    /// The latest self-check, if one ran.
    pub fn last(&self) -> Option<FederationHealth> {
        self.inner.last.lock().ok().and_then(|last| last.clone())
    }

    /// Every self-check's result from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FederationHealth> {
        self.inner.events.subscribe()
    }
}

/// Asks a matrix-federation-tester API about `server_name`.
async fn ask_external(url: &str, server_name: &str) -> ExternalResult {
    let mut result = ExternalResult {
        url: url.to_owned(),
        federation_ok: None,
        error: None,
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    let address = match reqwest::Url::parse_with_params(
        &format!("{url}/api/report"),
        [("server_name", server_name)],
    ) {
        Ok(address) => address,
        Err(e) => {
            result.error = Some(format!("not a URL: {e}"));
            return result;
        }
    };
    let answer = client.get(address).send().await;
    match answer {
        Ok(response) if response.status().is_success() => {
            match response.json::<serde_json::Value>().await {
                Ok(body) => match body
                    .get("FederationOK")
                    .and_then(serde_json::Value::as_bool)
                {
                    Some(ok) => result.federation_ok = Some(ok),
                    None => result.error = Some("the answer has no FederationOK".to_owned()),
                },
                Err(e) => result.error = Some(format!("the answer is not JSON: {e}")),
            }
        }
        Ok(response) => result.error = Some(format!("HTTP {}", response.status())),
        Err(e) => result.error = Some(e.to_string()),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_800_000_000_000;

    fn destination(
        name: &str,
        last_success: Option<i64>,
        failures: u32,
        queued: u64,
    ) -> DestinationHealth {
        DestinationHealth {
            destination: name.to_owned(),
            last_success_ts: last_success,
            last_failure_ts: Some(NOW - 60_000),
            last_error: Some("connection refused".to_owned()),
            failures,
            retry_at_ts: NOW + 60_000,
            queued,
        }
    }

    fn healthy_report() -> Report {
        crate::service::checker::report::passing_report()
    }

    #[test]
    fn a_destination_silent_for_two_hours_with_mail_waiting_degrades_federation() {
        let all = [
            destination("matrix.org", Some(NOW - 3 * HOUR), 12, 5),
            destination("recent.example", Some(NOW - HOUR), 3, 5),
            destination("idle.example", Some(NOW - 9 * HOUR), 0, 0),
            destination("never.example", None, 12, 2),
            destination("new.example", None, 4, 2),
        ];
        let stuck = stuck_destinations(&all, NOW);
        let messages: Vec<&str> = stuck.iter().map(|s| s.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "matrix.org has not accepted our transactions for 3 h",
                "never.example has never accepted our transactions (12 attempts failed)",
            ]
        );
        let (state, summary) = evaluate(&healthy_report(), &stuck);
        assert_eq!(state, HealthState::Degraded);
        assert_eq!(
            summary,
            "federation degraded: matrix.org has not accepted our transactions for 3 h"
        );
        assert_eq!(evaluate(&healthy_report(), &[]).0, HealthState::Ok);
    }

    #[test]
    fn a_failing_self_check_says_its_first_problem() {
        let mut report = healthy_report();
        report.problem(
            "203.0.113.7:8448",
            "port 8448 is closed on 203.0.113.7",
            "open it",
        );
        report.conclude();
        assert_eq!(
            evaluate(&report, &[]),
            (
                HealthState::Failing,
                "federation failing: port 8448 is closed on 203.0.113.7".to_owned()
            )
        );
    }
}
