//! Opening ports on the home router (UPnP Internet Gateway Device, with `igd-next`), only
//! when the user asks: the router is found by SSDP, each port is forwarded to this machine,
//! and the public address the router has is reported. Routers without UPnP (or with it
//! turned off) are told apart from refusals, each with what to do by hand.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use igd_next::{AddPortError, PortMappingProtocol, SearchOptions, search_gateway};
use serde::Serialize;

/// How long a mapping lasts before the router drops it, unless renewed (a week).
const LEASE_SECS: u32 = 7 * 24 * 3600;

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Mapping {
    /// The port on the router's public address.
    pub external_port: u16,
    /// Where the router sends it.
    pub internal: SocketAddr,
    /// How long the router keeps it, in seconds (0: until it restarts or the mapping is
    /// removed). Ask again before then to keep it.
    pub lease_secs: u32,
}

/// What the router did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PortMapReport {
    /// The router that answered.
    pub gateway: SocketAddr,
    /// The router's public address, if it told.
    pub external_ip: Option<IpAddr>,
    /// The ports now forwarded.
    pub mapped: Vec<Mapping>,
    /// The ports the router refused, each with its reason and what to do.
    pub failed: Vec<String>,
}

/// Asks the router to forward each `(external, internal)` TCP port to this machine.
/// `broadcast` is where the SSDP search goes (the standard multicast group unless a test
/// or an unusual network names another).
pub async fn map_ports(
    ports: &[(u16, u16)],
    broadcast: Option<SocketAddr>,
    timeout: Duration,
) -> Result<PortMapReport, String> {
    let ports = ports.to_vec();
    tokio::task::spawn_blocking(move || map_ports_blocking(&ports, broadcast, timeout))
        .await
        .map_err(|e| e.to_string())?
}

fn map_ports_blocking(
    ports: &[(u16, u16)],
    broadcast: Option<SocketAddr>,
    timeout: Duration,
) -> Result<PortMapReport, String> {
    let mut options = SearchOptions {
        timeout: Some(timeout),
        single_search_timeout: Some(timeout),
        ..SearchOptions::default()
    };
    if let Some(broadcast) = broadcast {
        options.broadcast_address = broadcast;
        if broadcast.ip().is_loopback() {
            options.bind_addr = SocketAddr::new(broadcast.ip(), 0);
        }
    }
    let gateway = search_gateway(options).map_err(|e| {
        format!(
            "no router answered the UPnP search ({e}): UPnP may be off on your router; turn \
             it on, or forward the ports by hand in the router's settings"
        )
    })?;
    let local_ip = local_address_towards(gateway.addr)
        .map_err(|e| format!("cannot tell this machine's address on the home network: {e}"))?;
    let external_ip = gateway.get_external_ip().ok();
    let mut report = PortMapReport {
        gateway: gateway.addr,
        external_ip,
        mapped: Vec::new(),
        failed: Vec::new(),
    };
    for &(external, internal) in ports {
        let internal = SocketAddr::new(local_ip, internal);
        let add = |lease| {
            gateway.add_port(
                PortMappingProtocol::TCP,
                external,
                internal,
                lease,
                "Kith homeserver",
            )
        };
        let mut lease_secs = LEASE_SECS;
        let mut result = add(lease_secs);
        // Many IGDv1 routers take only permanent mappings (UPnP error 725).
        if matches!(result, Err(AddPortError::OnlyPermanentLeasesSupported)) {
            lease_secs = 0;
            result = add(lease_secs);
        }
        match result {
            Ok(()) => report.mapped.push(Mapping {
                external_port: external,
                internal,
                lease_secs,
            }),
            Err(e) => report.failed.push(format!(
                "the router refused to forward port {external} to {internal} ({e}): forward \
                 it by hand in the router's settings"
            )),
        }
    }
    Ok(report)
}

/// This machine's address on the network that reaches `gateway` (no packet is sent).
fn local_address_towards(gateway: SocketAddr) -> std::io::Result<IpAddr> {
    let unspecified: SocketAddr = if gateway.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(unspecified)?;
    socket.connect(gateway)?;
    Ok(socket.local_addr()?.ip())
}
