//! An interface of its own for a `moat do` sandbox, as `runsc do` makes one: where there is no
//! interface to take (the host's initial network namespace) or when asked (`--veth`), the
//! front makes a veth pair. One end, `moatPID`, stays in the caller's namespace with the
//! address `.1` of a /30 of its own in 100.64.0.0/10 (RFC 6598's shared space, which hosts
//! rarely route); the other end is `eth0` in a fresh, otherwise empty network namespace, with
//! `.2` and a default route through `.1`, and is taken from there exactly as an OCI
//! container's interface is (`network::take_interface`). With `iptables` installed, the
//! caller's namespace forwards and masquerades the sandbox's traffic to its other interfaces
//! (rules inserted for this sandbox's address only, removed at the end; IPv4 forwarding is
//! switched on and left on, as runsc leaves it).
//!
//! The namespace lives as long as something holds it: the packet socket on `eth0` (the
//! kernel's) and the file the front keeps. When both are gone the pair goes with it; the
//! front also deletes its end explicitly at the end ([`Veth::remove`]).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;

use crate::network::{in_netns, Rtnl, TakenInterface};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const IFF_UP: u32 = 0x1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
/// The sandbox's end's name, in its own namespace.
const SANDBOX_END: &str = "eth0";

/// The caller's end of a sandbox's veth pair, and the forwarding rules made for it.
#[derive(Debug)]
pub struct Veth {
    /// `moatPID`, in the caller's namespace.
    pub host_end: String,
    pub host_addr: Ipv4Addr,
    pub sandbox_addr: Ipv4Addr,
    /// The `iptables` rules inserted (each as its arguments after `-I`/`-D`).
    rules: Vec<Vec<String>>,
    /// Holds the sandbox end's namespace until the sandbox has its packet socket.
    netns: OwnedFd,
}

/// An rtnetlink attribute: length, type, payload, padded to 4 bytes.
fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// `struct ifinfomsg` for link `index` with `flags` (those in `change` are set or cleared).
fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    m[4..8].copy_from_slice(&index.to_le_bytes());
    m[8..12].copy_from_slice(&flags.to_le_bytes());
    m[12..16].copy_from_slice(&change.to_le_bytes());
    m
}

fn name(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Send one request and wait for its acknowledgement.
fn request(rtnl: &Rtnl, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
    rtnl.send(kind, NLM_F_REQUEST | NLM_F_ACK | flags, body)?;
    rtnl.replies(false).map(drop)
}

/// The index of link `link` of the socket's namespace.
fn index_of(rtnl: &Rtnl, link: &str) -> io::Result<i32> {
    crate::network::links(rtnl)?
        .into_iter()
        .find(|d| d.name == link)
        .map(|d| d.index)
        .ok_or_else(|| io::Error::other(format!("no link {link}")))
}

fn set_up(rtnl: &Rtnl, index: i32) -> io::Result<()> {
    request(rtnl, RTM_NEWLINK, 0, &ifinfomsg(index, IFF_UP, IFF_UP))
}

/// Give link `index` the IPv4 address `addr`/`prefix`.
fn add_address(rtnl: &Rtnl, index: i32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut body = vec![libc::AF_INET as u8, prefix, 0, 0];
    body.extend_from_slice(&index.to_le_bytes());
    attr(&mut body, IFA_LOCAL, &addr.octets());
    attr(&mut body, IFA_ADDRESS, &addr.octets());
    request(rtnl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body)
}

/// A default route through `gateway` on link `index`.
fn add_default_route(rtnl: &Rtnl, index: i32, gateway: Ipv4Addr) -> io::Result<()> {
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let mut body = vec![
        libc::AF_INET as u8,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        0,
        RTN_UNICAST,
    ];
    body.extend_from_slice(&0u32.to_le_bytes());
    attr(&mut body, RTA_GATEWAY, &gateway.octets());
    attr(&mut body, RTA_OIF, &index.to_le_bytes());
    request(rtnl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &body)
}

/// A fresh network namespace (made by a thread of its own, which ends; the file holds it).
fn new_netns() -> io::Result<OwnedFd> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                moat_platform::packet::unshare_network()?;
                Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("network thread panicked")))
    })
}

/// The /30 of this sandbox in 100.64.0.0/10, chosen by `id` (the front's pid): the caller's
/// end's address and the sandbox's.
fn subnet(id: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (id % (1 << 20)) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

impl Veth {
    /// Make the pair and take the sandbox's end (see the module's doc).
    pub fn make() -> io::Result<(Veth, TakenInterface)> {
        let id = std::process::id();
        let (host_addr, sandbox_addr) = subnet(id);
        let host_end = format!("moat{id}");
        let netns = new_netns()?;
        let rtnl = Rtnl::open()?;
        // The pair, its peer made directly in the new namespace as `eth0`.
        let mut peer = ifinfomsg(0, 0, 0);
        attr(&mut peer, IFLA_IFNAME, &name(SANDBOX_END));
        attr(
            &mut peer,
            IFLA_NET_NS_FD,
            &(netns.as_raw_fd() as u32).to_le_bytes(),
        );
        let mut data = Vec::new();
        attr(&mut data, VETH_INFO_PEER, &peer);
        let mut info = Vec::new();
        attr(&mut info, IFLA_INFO_KIND, &name("veth"));
        attr(&mut info, IFLA_INFO_DATA, &data);
        let mut body = ifinfomsg(0, 0, 0);
        attr(&mut body, IFLA_IFNAME, &name(&host_end));
        attr(&mut body, IFLA_LINKINFO, &info);
        request(&rtnl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &body)?;
        let mut veth = Veth {
            host_end,
            host_addr,
            sandbox_addr,
            rules: Vec::new(),
            netns,
        };
        // From here on, a failure removes the pair (`Drop` is not used: the end is removed
        // when the caller says the sandbox is over).
        match veth.finish(&rtnl) {
            Ok(taken) => Ok((veth, taken)),
            Err(e) => {
                veth.remove();
                Err(e)
            }
        }
    }

    fn finish(&mut self, rtnl: &Rtnl) -> io::Result<TakenInterface> {
        let host_index = index_of(rtnl, &self.host_end)?;
        add_address(rtnl, host_index, self.host_addr, 30)?;
        set_up(rtnl, host_index)?;
        let (sandbox_addr, gateway) = (self.sandbox_addr, self.host_addr);
        let taken = in_netns(&self.netns, move || {
            let rtnl = Rtnl::open()?;
            set_up(&rtnl, index_of(&rtnl, "lo")?)?;
            let index = index_of(&rtnl, SANDBOX_END)?;
            add_address(&rtnl, index, sandbox_addr, 30)?;
            set_up(&rtnl, index)?;
            add_default_route(&rtnl, index, gateway)?;
            crate::network::take_interface(false)
                .map_err(|e| io::Error::other(e.to_string()))?
                .ok_or_else(|| io::Error::other("the new namespace has no interface to take"))
        })?;
        self.forward();
        Ok(taken)
    }

    /// Forward and masquerade the sandbox's traffic, if `iptables` is installed (said in the
    /// log otherwise: the sandbox then reaches this namespace's end only).
    fn forward(&mut self) {
        let sandbox = format!("{}/32", self.sandbox_addr);
        let end = self.host_end.as_str();
        let rules: Vec<Vec<String>> = [
            &[
                "-t",
                "nat",
                "POSTROUTING",
                "-s",
                &sandbox,
                "!",
                "-o",
                end,
                "-j",
                "MASQUERADE",
            ][..],
            &["FORWARD", "-i", end, "-j", "ACCEPT"][..],
            &["FORWARD", "-o", end, "-j", "ACCEPT"][..],
        ]
        .iter()
        .map(|r| r.iter().map(|s| (*s).to_string()).collect())
        .collect();
        if std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").is_err() {
            tracing::info!(
                "IPv4 forwarding cannot be switched on: the sandbox reaches its gateway only"
            );
            return;
        }
        for rule in rules {
            match iptables("-I", &rule) {
                Ok(()) => self.rules.push(rule),
                Err(e) => {
                    tracing::info!("iptables {rule:?}: {e}; the sandbox reaches its gateway only");
                    break;
                }
            }
        }
    }

    /// Remove the forwarding rules and this namespace's end of the pair (the other end goes
    /// with it).
    pub fn remove(&mut self) {
        for rule in std::mem::take(&mut self.rules) {
            if let Err(e) = iptables("-D", &rule) {
                tracing::warn!("removing the iptables rule {rule:?}: {e}");
            }
        }
        let removed = Rtnl::open().and_then(|rtnl| {
            let index = index_of(&rtnl, &self.host_end)?;
            request(&rtnl, RTM_DELLINK, 0, &ifinfomsg(index, 0, 0))
        });
        if let Err(e) = removed {
            tracing::debug!("removing {}: {e}", self.host_end);
        }
    }
}

/// `iptables -w ACTION RULE...`, where a rule may start with `-t TABLE`.
fn iptables(action: &str, rule: &[String]) -> io::Result<()> {
    let (table, rest) = match rule {
        [t, table, rest @ ..] if t == "-t" => (Some(table), rest),
        rest => (None, rest),
    };
    let mut cmd = Command::new("iptables");
    cmd.arg("-w");
    if let Some(table) = table {
        cmd.args(["-t", table]);
    }
    let out = cmd.arg(action).args(rest).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The `/etc/resolv.conf` a `--veth` sandbox needs when the host's names only loopback
/// resolvers (systemd-resolved's stub at 127.0.0.53, a local dnsmasq): those are the host's
/// loopback, which the sandbox cannot reach; the upstream file (systemd-resolved's
/// `/run/systemd/resolve/resolv.conf`) names the real ones. `None`: the host's file serves.
pub fn resolv_conf(host: &str, upstream: Option<&str>) -> Option<String> {
    let servers = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .map(|v| v.trim().to_string())
            .collect()
    };
    let loopback = |s: &String| {
        s.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    };
    let ours = servers(host);
    if ours.is_empty() || !ours.iter().all(loopback) {
        return None;
    }
    let upstream = upstream?;
    let theirs = servers(upstream);
    (!theirs.is_empty() && !theirs.iter().any(loopback)).then(|| upstream.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_resolver_is_replaced_by_the_upstream_ones() {
        let stub = "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0\nsearch lan\n";
        let upstream = "nameserver 192.0.2.53\nsearch lan\n";
        assert_eq!(
            resolv_conf(stub, Some(upstream)),
            Some(upstream.to_string())
        );
        // A host file naming a reachable server stays.
        assert_eq!(resolv_conf("nameserver 10.0.0.1\n", Some(upstream)), None);
        assert_eq!(
            resolv_conf(
                "nameserver 127.0.0.1\nnameserver 10.0.0.1\n",
                Some(upstream)
            ),
            None
        );
        // Nothing better to offer: the host's file stays.
        assert_eq!(resolv_conf(stub, None), None);
        assert_eq!(resolv_conf(stub, Some("nameserver ::1\n")), None);
    }

    #[test]
    fn subnets_are_30s_in_the_shared_space() {
        assert_eq!(
            subnet(0),
            (Ipv4Addr::new(100, 64, 0, 1), Ipv4Addr::new(100, 64, 0, 2))
        );
        assert_eq!(
            subnet(4_194_303),
            (
                Ipv4Addr::new(100, 127, 255, 253),
                Ipv4Addr::new(100, 127, 255, 254)
            )
        );
    }
}
