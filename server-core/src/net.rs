//! Which IP addresses the server may connect to on someone else's say-so (URL previews,
//! federation): only public unicast ones. Everything a user or a remote server could use to
//! reach the server's own machine or network (loopback, private LANs, link-local, CGNAT,
//! unique-local) or that is not a real destination (unspecified, multicast, broadcast,
//! documentation, reserved) is refused. A leaf module.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether an address is a public unicast address that the server may connect to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let blocked = ip.is_unspecified()          // 0.0.0.0
        || a == 0                              // 0.0.0.0/8 "this network"
        || ip.is_loopback()                    // 127.0.0.0/8
        || ip.is_private()                     // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()                  // 169.254/16
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 CGNAT
        || (a == 192 && b == 0 && c == 0)      // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 88 && c == 99)    // 192.88.99/24 old 6to4 relay anycast
        || ip.is_documentation()               // 192.0.2/24, 198.51.100/24, 203.0.113/24
        || (a == 198 && (b == 18 || b == 19))  // 198.18/15 benchmarking
        || ip.is_multicast()                   // 224/4
        || a >= 240; // 240/4 reserved, and 255.255.255.255 broadcast
    !blocked
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // An IPv4 address in IPv6 clothing is judged as the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    let blocked = ip.is_unspecified()                    // ::
        || ip.is_loopback()                              // ::1
        || ip.is_multicast()                             // ff00::/8
        || (segments[0] & 0xfe00) == 0xfc00              // fc00::/7 unique local
        || (segments[0] & 0xffc0) == 0xfe80              // fe80::/10 link local
        || (segments[0] & 0xffc0) == 0xfec0              // fec0::/10 old site local
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // 2001:db8::/32 documentation
        || segments[0] == 0x3fff && segments[1] < 0x1000 // 3fff::/20 documentation
        || segments[..6] == [0, 0, 0, 0, 0, 0]           // ::/96 IPv4-compatible (deprecated)
        || segments[0] == 0x0100 && segments[1..4] == [0, 0, 0] // 100::/64 discard
        || segments[..3] == [0x64, 0xff9b, 1]            // 64:ff9b:1::/48 local NAT64
        || (segments[0] == 0x2001 && segments[1] == 0) // 2001::/32 Teredo tunnels
        || segments[0] == 0x2002; // 2002::/16 6to4, which can tunnel to any IPv4 address
    !blocked
}

#[cfg(test)]
mod tests {
    use super::is_public;

    fn public(s: &str) -> bool {
        is_public(s.parse().expect("an IP address"))
    }

    #[test]
    fn public_unicast_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
        ] {
            assert!(public(ip), "{ip} should be public");
        }
    }

    #[test]
    fn private_loopback_and_special_addresses_are_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "64:ff9b:1::a00:1",
            "192.88.99.1",
        ] {
            assert!(!public(ip), "{ip} should be refused");
        }
    }
}
