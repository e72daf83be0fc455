//! The federation connectivity checker against servers on loopback, found through a DNS
//! server of the test's own and trusted through a test CA: real Kith servers and a real
//! Synapse that federate, and fake servers that each get one thing wrong. Every case checks
//! the verdict and the message a user would read.

use std::net::{IpAddr, SocketAddr};

use kith::service::checker::{
    Checker, CheckerOptions,
    report::{Report, StepStatus, Verdict},
};
use kith_tests::{
    TestServer,
    checker::{FakeServer, Fault, TestCa, TestDns, loopback_ip},
};
use serde_json::json;

fn checker(dns: &TestDns, ca: &TestCa) -> Checker {
    Checker::new(&CheckerOptions {
        dns_server: Some(dns.addr),
        extra_roots_pem: Some(ca.pem.clone().into_bytes()),
        timeout: std::time::Duration::from_secs(3),
    })
    .expect("a checker")
}

/// A Kith server named `server_name` whose federation listener is on `addr`, with a
/// certificate for `cert_names` from `ca`.
async fn kith_at(
    server_name: &str,
    addr: SocketAddr,
    ca: &TestCa,
    cert_names: &[&str],
) -> TestServer {
    let cert = ca.issue(cert_names, 90);
    TestServer::builder()
        .config(|c| {
            c.server_name = server_name.to_owned();
            c.listen.federation = addr.to_string();
        })
        .file("tls/federation.crt", cert.cert_pem)
        .file("tls/federation.key", cert.key_pem)
        .start()
        .await
}

fn step_status(report: &Report, name: &str) -> StepStatus {
    report
        .steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name} in\n{}", report.to_text()))
        .status
}

fn has_problem(report: &Report, text: &str) -> bool {
    report.problems.iter().any(|p| p.message.contains(text))
}

#[tokio::test]
async fn a_kith_server_behind_an_srv_record_is_reported_federation_ok() {
    let dns = TestDns::start().await;
    let ca = TestCa::new();
    let ip = loopback_ip();
    let server = kith_at(
        "healthy.test",
        SocketAddr::new(ip, 8443),
        &ca,
        &["healthy.test"],
    )
    .await;
    dns.srv("_matrix-fed._tcp.healthy.test", "fed.healthy.test", 8443);
    dns.address("fed.healthy.test", ip);

    let report = checker(&dns, &ca).check("healthy.test").await;
    println!("{}", report.to_text());
    assert!(report.federation_ok, "{}", report.to_text());
    assert_eq!(report.verdict, Verdict::Ok);
    assert_eq!(step_status(&report, "well-known"), StepStatus::Skipped);
    assert_eq!(
        step_status(&report, "SRV _matrix-fed._tcp.healthy.test"),
        StepStatus::Ok
    );
    let addr = format!("{ip}:8443");
    assert_eq!(step_status(&report, &addr), StepStatus::Ok);
    let connection = &report.connection_reports[&addr];
    assert!(connection.checks.all_checks_ok);
    assert!(connection.checks.valid_certificates);
    assert_eq!(connection.ed25519_verify_keys.len(), 1);
    assert_eq!(report.version.name, "Kith");
    assert_eq!(report.dns.srv_records[0].target, "fed.healthy.test");
    // The JSON that matrix-federation-tester's readers expect.
    let json = serde_json::to_value(&report).expect("JSON");
    assert_eq!(json["FederationOK"], true);
    assert_eq!(
        json["ConnectionReports"][&addr]["Checks"]["AllChecksOK"],
        true
    );
    server.stop().await;
}

#[tokio::test]
async fn a_well_known_delegation_to_a_kith_server_is_followed_and_reported_ok() {
    let dns = TestDns::start().await;
    let ca = TestCa::new();
    let (web, fed) = (loopback_ip(), loopback_ip());
    dns.address("family.test", web);
    dns.address("matrix.family.test", fed);
    let _website = FakeServer::start(
        SocketAddr::new(web, 443),
        &ca.issue(&["family.test"], 90),
        "family.test",
        Fault::None,
        Some(json!({ "m.server": "matrix.family.test:8448" })),
    )
    .await;
    // Delegated: the certificate is for the delegated name.
    let server = kith_at(
        "family.test",
        SocketAddr::new(fed, 8448),
        &ca,
        &["matrix.family.test"],
    )
    .await;

    let report = checker(&dns, &ca).check("family.test").await;
    println!("{}", report.to_text());
    assert!(report.federation_ok, "{}", report.to_text());
    assert_eq!(report.well_known.server, "matrix.family.test:8448");
    assert!(report.well_known.cache_expires_at > report.checked_at / 1000);
    assert_eq!(step_status(&report, "well-known"), StepStatus::Ok);
    assert_eq!(step_status(&report, "delegated server"), StepStatus::Ok);
    assert!(report.dns.srv_skipped);
    assert_eq!(report.dns.addrs, [format!("{fed}:8448")]);
    server.stop().await;
}

/// One server name, set up for one case, and what the check must say.
struct Case {
    name: &'static str,
    verdict: Verdict,
    /// A problem (for failing) or warning (for degraded) containing this.
    says: String,
}

#[tokio::test]
async fn each_common_mistake_gets_its_verdict_and_the_message_that_explains_it() {
    let dns = TestDns::start().await;
    let ca = TestCa::new();
    let mut servers = Vec::new();
    let mut cases = Vec::new();

    // Only the deprecated `_matrix._tcp` record: works, with a warning.
    let ip = loopback_ip();
    dns.srv("_matrix._tcp.legacy.test", "host.legacy.test", 8448);
    dns.address("host.legacy.test", ip);
    servers.push(fake(ip, &ca, &["legacy.test"], 90, "legacy.test", Fault::None).await);
    cases.push(Case {
        name: "legacy.test",
        verdict: Verdict::Degraded,
        says: "only the deprecated _matrix._tcp.legacy.test record exists".to_owned(),
    });

    // An SRV record whose target is an alias.
    let ip = loopback_ip();
    dns.srv("_matrix-fed._tcp.alias.test", "target.alias.test", 8448);
    dns.alias("target.alias.test", "real.alias.test");
    dns.address("real.alias.test", ip);
    servers.push(fake(ip, &ca, &["alias.test"], 90, "alias.test", Fault::None).await);
    cases.push(Case {
        name: "alias.test",
        verdict: Verdict::Failing,
        says: "which is an alias (CNAME) of real.alias.test".to_owned(),
    });

    // Split brain: the host's two addresses delegate to different servers.
    let (one, two) = (loopback_ip(), loopback_ip());
    dns.address("split.test", one);
    dns.address("split.test", two);
    for (ip, target) in [(one, "a.split.test:8448"), (two, "b.split.test:8448")] {
        servers.push(
            FakeServer::start(
                SocketAddr::new(ip, 443),
                &ca.issue(&["split.test"], 90),
                "split.test",
                Fault::None,
                Some(json!({ "m.server": target })),
            )
            .await,
        );
    }
    cases.push(Case {
        name: "split.test",
        verdict: Verdict::Failing,
        says: "differs between the addresses of split.test".to_owned(),
    });

    // An expired certificate.
    let ip = loopback_ip();
    dns.address("expired.test", ip);
    servers.push(fake(ip, &ca, &["expired.test"], -3, "expired.test", Fault::None).await);
    cases.push(Case {
        name: "expired.test",
        verdict: Verdict::Failing,
        says: format!("the certificate on {ip}:8448 expired 3 days ago"),
    });

    // A certificate for another name.
    let ip = loopback_ip();
    dns.address("wrongname.test", ip);
    servers.push(fake(ip, &ca, &["other.test"], 90, "wrongname.test", Fault::None).await);
    cases.push(Case {
        name: "wrongname.test",
        verdict: Verdict::Failing,
        says: format!("the certificate on {ip}:8448 is for other.test, not for wrongname.test"),
    });

    // A certificate expiring in 5 days: federation works, but not for long.
    let ip = loopback_ip();
    dns.address("soon.test", ip);
    servers.push(fake(ip, &ca, &["soon.test"], 5, "soon.test", Fault::None).await);
    cases.push(Case {
        name: "soon.test",
        verdict: Verdict::Degraded,
        says: format!("the certificate on {ip}:8448 expires in 5 days"),
    });

    // Keys signed by another key than the one listed.
    let ip = loopback_ip();
    dns.address("forged.test", ip);
    servers.push(
        fake(
            ip,
            &ca,
            &["forged.test"],
            90,
            "forged.test",
            Fault::WrongSigningKey,
        )
        .await,
    );
    cases.push(Case {
        name: "forged.test",
        verdict: Verdict::Failing,
        says: "carries no good signature by its key ed25519:fake".to_owned(),
    });

    // Keys served as text/plain.
    let ip = loopback_ip();
    dns.address("plain.test", ip);
    servers.push(
        fake(
            ip,
            &ca,
            &["plain.test"],
            90,
            "plain.test",
            Fault::TextPlainKeys,
        )
        .await,
    );
    cases.push(Case {
        name: "plain.test",
        verdict: Verdict::Failing,
        says: "served as text/plain, not application/json".to_owned(),
    });

    // Nothing listens where the SRV record points.
    let ip = loopback_ip();
    dns.srv("_matrix-fed._tcp.closed.test", "fed.closed.test", 8448);
    dns.address("fed.closed.test", ip);
    cases.push(Case {
        name: "closed.test",
        verdict: Verdict::Failing,
        says: format!("port 8448 is closed on {ip}"),
    });

    let checker = checker(&dns, &ca);
    for case in cases {
        let report = checker.check(case.name).await;
        println!("{}", report.to_text());
        assert_eq!(report.verdict, case.verdict, "{}", report.to_text());
        assert_eq!(report.federation_ok, case.verdict != Verdict::Failing);
        let findings = match case.verdict {
            Verdict::Failing => &report.problems,
            _ => &report.warnings,
        };
        let finding = findings
            .iter()
            .find(|f| f.message.contains(&case.says))
            .unwrap_or_else(|| {
                panic!(
                    "{}: nothing says {:?}:\n{}",
                    case.name,
                    case.says,
                    report.to_text()
                )
            });
        assert!(!finding.fix.is_empty(), "{}: no fix", case.name);
    }
    drop(servers);
}

async fn fake(
    ip: IpAddr,
    ca: &TestCa,
    cert_names: &[&str],
    days_left: i64,
    server_name: &str,
    fault: Fault,
) -> FakeServer {
    FakeServer::start(
        SocketAddr::new(ip, 8448),
        &ca.issue(cert_names, days_left),
        server_name,
        fault,
        None,
    )
    .await
}

#[tokio::test]
async fn a_malformed_server_name_fails_before_any_lookup() {
    let dns = TestDns::start().await;
    let ca = TestCa::new();
    let report = checker(&dns, &ca).check("not a name").await;
    assert_eq!(report.verdict, Verdict::Failing);
    assert!(has_problem(
        &report,
        "`not a name` is not a valid server name"
    ));
    assert_eq!(
        report.error.as_deref(),
        Some("`not a name` is not a valid server name")
    );
}

#[tokio::test]
async fn a_real_synapse_with_a_trusted_certificate_is_reported_federation_ok() {
    let ca = TestCa::new();
    let cert = ca.issue(&["localhost"], 90);
    let synapse =
        kith_tests::synapse::Synapse::start_with_certificate(&cert.cert_pem, &cert.key_pem).await;
    // `localhost:PORT` needs no DNS: an explicit port (step 2), and `localhost` is
    // 127.0.0.1 and ::1 without asking any server (RFC 6761).
    let dns = TestDns::start().await;
    let report = checker(&dns, &ca).check(&synapse.server_name).await;
    println!("{}", report.to_text());
    assert!(report.federation_ok, "{}", report.to_text());
    assert_eq!(report.version.name, "Synapse");
    assert!(report.dns.srv_skipped);
    assert!(
        report
            .connection_reports
            .values()
            .all(|c| c.checks.all_checks_ok && c.ed25519_verify_keys.contains_key("ed25519:a_kith")),
        "{}",
        report.to_text()
    );
}

/// A stand-in for matrix-federation-tester's API: `/api/report` answers `FederationOK`
/// with what `ok` holds.
async fn fake_tester(ok: std::sync::Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
    use axum::{Router, routing::get};
    let app = Router::new().route(
        "/api/report",
        get(move |query: axum::extract::RawQuery| {
            let ok = ok.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                assert_eq!(query.0.as_deref(), Some("server_name=watched.test"));
                axum::Json(json!({ "FederationOK": ok }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn the_server_checks_its_own_federation_and_tells_admins_and_the_event_stream() {
    let dns = TestDns::start().await;
    let ca = TestCa::new();
    let ip = loopback_ip();
    dns.address("watched.test", ip);
    let tester_ok = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let tester = fake_tester(tester_ok.clone()).await;
    let ca_dir = tempfile::tempdir().expect("a temp dir");
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("write the CA");
    let cert = ca.issue(&["watched.test"], 90);
    let server = TestServer::builder()
        .config(|c| {
            c.server_name = "watched.test".to_owned();
            c.listen.federation = SocketAddr::new(ip, 8448).to_string();
            c.checker.dns_server = dns.addr.to_string();
            c.checker.ca_file = ca_file.display().to_string();
            c.checker.external_tester_url = format!("http://{tester}");
        })
        .file("tls/federation.crt", cert.cert_pem)
        .file("tls/federation.key", cert.key_pem)
        .start()
        .await;

    // The check at start shows in the status the dashboard and tray read.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let health = loop {
        let status = server.server().status().await.expect("status");
        if let Some(health) = status.federation_health {
            break health;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no self-check after 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        (health.state, health.summary.as_str()),
        (kith::service::health::HealthState::Ok, "federation OK")
    );

    // Admins read it through the admin API; others may not.
    let admin = server.admin().await;
    let (status, body) = admin.get("/_kith/admin/v1/federation/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "ok");
    assert_eq!(body["report"]["FederationOK"], true);
    assert_eq!(body["report"]["External"]["FederationOK"], true);
    let (status, body) = admin
        .get("/_kith/admin/v1/federation/check?server_name=watched.test")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["FederationOK"], true);
    assert_eq!(body["ServerName"], "watched.test");
    let someone = server.register("someone").await;
    let (status, body) = someone.get("/_kith/admin/v1/federation/health").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    // When the outside view disagrees, federation is failing, and the event says why.
    tester_ok.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut events = server.server().subscribe();
    let (status, body) = admin
        .post("/_kith/admin/v1/federation/health", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "failing");
    let expected = format!(
        "federation failing: the federation tester at http://{tester} cannot federate with this server"
    );
    assert_eq!(body["summary"], expected.as_str());
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
        .await
        .expect("an event in time")
        .expect("an event");
    assert_eq!(
        event,
        kith::control::ServerEvent::FederationHealth {
            state: kith::service::health::HealthState::Failing,
            summary: expected,
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn publishing_what_the_delegation_plan_says_makes_federation_ok() {
    let dns = TestDns::start().await;
    let ca = TestCa::new();
    let ip = loopback_ip();
    let cert = ca.issue(&["matrix.plan.test"], 90);
    let server = TestServer::builder()
        .config(|c| {
            c.server_name = "plan.test".to_owned();
            c.listen.federation = SocketAddr::new(ip, 8448).to_string();
            c.well_known.server = "matrix.plan.test:8448".to_owned();
        })
        .file("tls/federation.crt", cert.cert_pem)
        .file("tls/federation.key", cert.key_pem)
        .start()
        .await;
    let admin = server.admin().await;
    let (status, plan) = admin
        .get(&format!("/_kith/admin/v1/federation/delegation?ipv4={ip}"))
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["certificate_name"], "matrix.plan.test");
    assert_eq!(
        plan["well_known_server"]["url"],
        "https://plan.test/.well-known/matrix/server"
    );
    assert_eq!(
        plan["zone_file"],
        format!("matrix.plan.test. 3600 IN A {ip}\nplan.test. 3600 IN A {ip}")
    );

    // Publish exactly that: the records, and the file on the website at plan.test.
    for record in plan["records"].as_array().expect("records") {
        let name = record["name"].as_str().expect("a name");
        let value = record["value"].as_str().expect("a value");
        dns.address(name, value.parse().expect("an address"));
    }
    let body: serde_json::Value =
        serde_json::from_str(plan["well_known_server"]["body"].as_str().expect("a body"))
            .expect("JSON");
    let _website = FakeServer::start(
        SocketAddr::new(ip, 443),
        &ca.issue(&["plan.test"], 90),
        "plan.test",
        Fault::None,
        Some(body),
    )
    .await;
    let report = checker(&dns, &ca).check("plan.test").await;
    assert!(report.federation_ok, "{}", report.to_text());
    server.stop().await;
}

#[tokio::test]
async fn a_well_known_file_behind_a_redirect_is_followed() {
    let dns = TestDns::start().await;
    let ca = TestCa::new();
    let (site, www, fed) = (loopback_ip(), loopback_ip(), loopback_ip());
    dns.address("moved.test", site);
    dns.address("www.moved.test", www);
    dns.address("matrix.moved.test", fed);
    let _site = FakeServer::redirecting(
        SocketAddr::new(site, 443),
        &ca.issue(&["moved.test"], 90),
        "https://www.moved.test/.well-known/matrix/server",
    )
    .await;
    let _www = FakeServer::start(
        SocketAddr::new(www, 443),
        &ca.issue(&["www.moved.test"], 90),
        "moved.test",
        Fault::None,
        Some(json!({ "m.server": "matrix.moved.test:8448" })),
    )
    .await;
    let _server = fake(
        fed,
        &ca,
        &["matrix.moved.test"],
        90,
        "moved.test",
        Fault::None,
    )
    .await;

    let report = checker(&dns, &ca).check("moved.test").await;
    assert!(report.federation_ok, "{}", report.to_text());
    assert_eq!(report.well_known.server, "matrix.moved.test:8448");
    assert_eq!(
        report.well_known.addresses[&site.to_string()].redirects,
        ["https://www.moved.test/.well-known/matrix/server"]
    );
}
