//! Bad links for a span of a test, inside the test network namespace: random
//! UDP loss, a UDP blackout that can be switched on and off, a UDP
//! bottleneck with a queue whose rate can change live, and a "relay only"
//! filter for TURN tests.
//!
//! The kernel here has no `netem` qdisc (measured facts:
//! `/work/shared/design/network-testbed-notes.md`), so loss and filters are
//! nftables rules and the bottleneck is HTB with a pfifo child on `lo`, the
//! device that carries all traffic between the namespace's addresses.
//!
//! The rules sit on the `input` hook, not `output`: every packet between
//! two local addresses crosses each hook exactly once, so either covers
//! both directions, but a drop on `output` fails the sender's `sendmsg`
//! with EPERM, which no real network does. Measured: with the relay-only
//! filter on `output`, libnice failed a pair at the first EPERM and coturn
//! stopped delivering relayed data after it refused a send, so TURN never
//! connected; on `input` (a silent drop, as on a real path) it did.
//!
//! Each condition is an RAII guard: it installs its own nftables table (or
//! `lo`'s root qdisc) when made and removes it on drop, and its counters can
//! be read at any time for a report. Only UDP is touched, so signaling
//! (TCP) and the test's REST calls pass untouched, and TCP to a TURN server
//! too.
//!
//! Calls are synchronous and each runs one short `nft` or `tc` process (a
//! few ms), fine on a multi-threaded tokio runtime; [`Blackout::pulse`]
//! times a blackout from async code. Tests of one binary run in parallel
//! threads but share the namespace: hold [`exclusive`] while a condition is
//! applied.

use std::collections::HashMap;
use std::io::Write;
use std::ops::RangeInclusive;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Why an impairment could not be applied or read.
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    #[error(
        "link impairments only run inside the test network namespace (lo, tnet0, tnet1): \
         run the test through `bash scripts/netns.sh` or `bash tests/run.sh`"
    )]
    NotInTestNamespace,
    #[error("`{0}` is not installed: run scripts/install-deps.sh")]
    ToolMissing(&'static str),
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot read {what}: {detail}")]
    Parse { what: &'static str, detail: String },
    #[error("invalid impairment: {0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, NetemError>;

static LINK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serializes the tests of one binary that impair the shared namespace.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    LINK.lock().await
}

fn ensure_netns() -> Result<()> {
    if crate::harness::in_test_netns() {
        Ok(())
    } else {
        Err(NetemError::NotInTestNamespace)
    }
}

/// Runs `tool args`, feeding `stdin` if given; its stdout.
fn run(tool: &'static str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => NetemError::ToolMissing(tool),
            _ => NetemError::Io(err),
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
        // Dropping the pipe closes it: the tool sees the end of its script.
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(NetemError::Command {
            command: format!("{tool} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One named nftables counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// The named counters in `nft -j list table` output.
pub fn parse_nft_counters(json: &str) -> Result<HashMap<String, Counter>> {
    let parsed: Value = serde_json::from_str(json).map_err(|err| NetemError::Parse {
        what: "nft -j output",
        detail: err.to_string(),
    })?;
    let mut counters = HashMap::new();
    for object in parsed["nftables"].as_array().into_iter().flatten() {
        let counter = &object["counter"];
        // Named counter objects carry a name; counters inside rules do not
        // appear at this level.
        if let Some(name) = counter["name"].as_str() {
            counters.insert(
                name.to_string(),
                Counter {
                    packets: counter["packets"].as_u64().unwrap_or(0),
                    bytes: counter["bytes"].as_u64().unwrap_or(0),
                },
            );
        }
    }
    Ok(counters)
}

static NEXT_TABLE: AtomicU64 = AtomicU64::new(1);

/// An `inet` table of our own, deleted on drop.
struct NftTable {
    name: String,
}

impl NftTable {
    /// Creates table `ca_<kind>_<pid>_<n>` with `body` (its declarations).
    fn create(kind: &str, body: &str) -> Result<Self> {
        ensure_netns()?;
        let name = format!(
            "ca_{kind}_{}_{}",
            std::process::id(),
            NEXT_TABLE.fetch_add(1, Ordering::Relaxed)
        );
        run(
            "nft",
            &["-f", "-"],
            Some(&format!("table inet {name} {{\n{body}\n}}\n")),
        )?;
        Ok(Self { name })
    }

    /// Runs an nft script in which `@T` stands for this table.
    fn apply(&self, script: &str) -> Result<()> {
        let script = script.replace("@T", &format!("inet {}", self.name));
        run("nft", &["-f", "-"], Some(&script)).map(drop)
    }

    fn counters(&self) -> Result<HashMap<String, Counter>> {
        parse_nft_counters(&run(
            "nft",
            &["-j", "list", "table", "inet", &self.name],
            None,
        )?)
    }

    fn packets<const N: usize>(&self, names: [&str; N]) -> Result<[u64; N]> {
        let counters = self.counters()?;
        Ok(names.map(|name| counters.get(name).map_or(0, |counter| counter.packets)))
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        if let Err(err) = run("nft", &["delete", "table", "inet", &self.name], None) {
            eprintln!("netem: cannot remove table {}: {err}", self.name);
        }
    }
}

/// UDP packets that reached a drop rule's chain, and how many it dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    pub udp_seen: u64,
    pub udp_dropped: u64,
}

impl DropCounters {
    pub fn dropped_percent(&self) -> f64 {
        if self.udp_seen == 0 {
            return 0.0;
        }
        self.udp_dropped as f64 * 100.0 / self.udp_seen as f64
    }
}

/// Random loss of UDP packets in both directions
/// (`numgen random mod 10000 < N drop`).
pub struct UdpLoss {
    table: NftTable,
    percent: f64,
}

impl UdpLoss {
    /// Drops `percent` % of UDP packets (0.01 % steps) until dropped.
    pub fn start(percent: f64) -> Result<Self> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(NetemError::Invalid(format!(
                "loss {percent} % is not in 0..=100"
            )));
        }
        let threshold = (percent * 100.0).round() as u32;
        let table = NftTable::create(
            "loss",
            &format!(
                r#"counter udp_seen {{}}
counter udp_dropped {{}}
chain out {{
  type filter hook input priority 0; policy accept;
  meta l4proto udp counter name "udp_seen"
  meta l4proto udp numgen random mod 10000 < {threshold} counter name "udp_dropped" drop
}}"#
            ),
        )?;
        Ok(Self { table, percent })
    }

    pub fn percent(&self) -> f64 {
        self.percent
    }

    pub fn counters(&self) -> Result<DropCounters> {
        let [udp_seen, udp_dropped] = self.table.packets(["udp_seen", "udp_dropped"])?;
        Ok(DropCounters {
            udp_seen,
            udp_dropped,
        })
    }
}

/// All UDP dropped while switched on: a dead media path whose signaling
/// (TCP) stays up. Made switched off; [`Blackout::on`] and
/// [`Blackout::off`] may be called from any thread.
pub struct Blackout {
    table: NftTable,
    /// When each blackout began and, once over, ended.
    spans: Mutex<Vec<(Instant, Option<Instant>)>>,
}

impl Blackout {
    pub fn new() -> Result<Self> {
        let table = NftTable::create(
            "blackout",
            r#"counter udp_seen {}
counter udp_dropped {}
chain gate {
}
chain out {
  type filter hook input priority 0; policy accept;
  meta l4proto udp counter name "udp_seen" jump gate
}"#,
        )?;
        Ok(Self {
            table,
            spans: Mutex::default(),
        })
    }

    fn spans(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, Option<Instant>)>> {
        // Poisoning cannot leave a Vec of instants inconsistent.
        self.spans
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn is_on(&self) -> bool {
        self.spans().last().is_some_and(|(_, end)| end.is_none())
    }

    /// Starts dropping every UDP packet; the instant it took effect.
    pub fn on(&self) -> Result<Instant> {
        let mut spans = self.spans();
        if let Some((start, None)) = spans.last() {
            return Ok(*start);
        }
        self.table
            .apply(r#"add rule @T gate counter name "udp_dropped" drop"#)?;
        let now = Instant::now();
        spans.push((now, None));
        Ok(now)
    }

    /// Lets UDP pass again; the instant it took effect.
    pub fn off(&self) -> Result<Instant> {
        let mut spans = self.spans();
        self.table.apply("flush chain @T gate")?;
        let now = Instant::now();
        if let Some((_, end @ None)) = spans.last_mut() {
            *end = Some(now);
        }
        Ok(now)
    }

    /// Every blackout so far: (start, end if over).
    pub fn history(&self) -> Vec<(Instant, Option<Instant>)> {
        self.spans().clone()
    }

    /// A blackout of `length` starting `after` from now, timed on the tokio
    /// runtime; resolves to (start, end).
    pub fn pulse(
        self: &Arc<Self>,
        after: Duration,
        length: Duration,
    ) -> tokio::task::JoinHandle<Result<(Instant, Instant)>> {
        let blackout = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let on = blackout.clone();
            let start = tokio::task::spawn_blocking(move || on.on())
                .await
                .map_err(|err| NetemError::Io(std::io::Error::other(err)))??;
            tokio::time::sleep(length).await;
            let end = tokio::task::spawn_blocking(move || blackout.off())
                .await
                .map_err(|err| NetemError::Io(std::io::Error::other(err)))??;
            Ok((start, end))
        })
    }

    pub fn counters(&self) -> Result<DropCounters> {
        let [udp_seen, udp_dropped] = self.table.packets(["udp_seen", "udp_dropped"])?;
        Ok(DropCounters {
            udp_seen,
            udp_dropped,
        })
    }
}

/// The bottleneck's queue, from `tc -s qdisc` of its pfifo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub dropped: u64,
    pub backlog_packets: u64,
    pub backlog_bytes: u64,
}

/// The counters of the qdisc with `handle` in `tc -s -j qdisc show` output.
pub fn parse_tc_qdisc(json: &str, handle: &str) -> Result<QueueCounters> {
    let parsed: Value = serde_json::from_str(json).map_err(|err| NetemError::Parse {
        what: "tc -j output",
        detail: err.to_string(),
    })?;
    let qdisc = parsed
        .as_array()
        .into_iter()
        .flatten()
        .find(|qdisc| qdisc["handle"] == handle)
        .ok_or_else(|| NetemError::Parse {
            what: "tc -j output",
            detail: format!("no qdisc {handle}"),
        })?;
    let field = |name: &str| qdisc[name].as_u64().unwrap_or(0);
    Ok(QueueCounters {
        sent_packets: field("packets"),
        sent_bytes: field("bytes"),
        dropped: field("drops"),
        backlog_packets: field("qlen"),
        backlog_bytes: field("backlog"),
    })
}

/// UDP squeezed through `rate` with a FIFO of `queue` packets: HTB on `lo`
/// with a fast default class for everything else, a `rate R ceil R` class
/// with a `pfifo limit Q` child, and a u32 filter sending IP protocol 17 to
/// it. One at a time (it owns `lo`'s root qdisc).
pub struct UdpBottleneck {
    rate_kbit: AtomicU32,
    queue_packets: u32,
}

const QUEUE_HANDLE: &str = "30:";

impl UdpBottleneck {
    pub fn start(rate_kbit: u32, queue_packets: u32) -> Result<Self> {
        ensure_netns()?;
        if rate_kbit == 0 || queue_packets == 0 {
            return Err(NetemError::Invalid(
                "rate and queue must be above zero".into(),
            ));
        }
        run(
            "tc",
            &[
                "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10",
            ],
            None,
        )
        .map_err(|err| match err {
            NetemError::Command { stderr, .. } if stderr.contains("Exclusivity") => {
                NetemError::Invalid(
                    "lo already has a root qdisc: another bottleneck is still applied".into(),
                )
            }
            other => other,
        })?;
        // From here on, dropping the guard removes whatever was added.
        let bottleneck = Self {
            rate_kbit: AtomicU32::new(rate_kbit),
            queue_packets,
        };
        let rate = format!("{rate_kbit}kbit");
        let limit = queue_packets.to_string();
        // The default class must never be the limit: a generous burst lets
        // lo's 64 KiB segments through at once.
        let steps: [&[&str]; 4] = [
            &[
                "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate",
                "10gbit", "ceil", "10gbit", "burst", "4mb", "cburst", "4mb", "quantum", "200000",
            ],
            &[
                "class", "add", "dev", "lo", "parent", "1:", "classid", "1:30", "htb", "rate",
                &rate, "ceil", &rate,
            ],
            &[
                "qdisc",
                "add",
                "dev",
                "lo",
                "parent",
                "1:30",
                "handle",
                QUEUE_HANDLE,
                "pfifo",
                "limit",
                &limit,
            ],
            &[
                "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "protocol", "17", "0xff", "flowid", "1:30",
            ],
        ];
        for args in steps {
            run("tc", args, None)?;
        }
        Ok(bottleneck)
    }

    /// Changes the rate live (the queue and its packets stay).
    pub fn set_rate(&self, rate_kbit: u32) -> Result<()> {
        if rate_kbit == 0 {
            return Err(NetemError::Invalid("rate must be above zero".into()));
        }
        let rate = format!("{rate_kbit}kbit");
        run(
            "tc",
            &[
                "class", "change", "dev", "lo", "parent", "1:", "classid", "1:30", "htb", "rate",
                &rate, "ceil", &rate,
            ],
            None,
        )?;
        self.rate_kbit.store(rate_kbit, Ordering::Relaxed);
        Ok(())
    }

    pub fn rate_kbit(&self) -> u32 {
        self.rate_kbit.load(Ordering::Relaxed)
    }

    pub fn queue_packets(&self) -> u32 {
        self.queue_packets
    }

    pub fn counters(&self) -> Result<QueueCounters> {
        parse_tc_qdisc(
            &run("tc", &["-s", "-j", "qdisc", "show", "dev", "lo"], None)?,
            QUEUE_HANDLE,
        )
    }
}

impl Drop for UdpBottleneck {
    fn drop(&mut self) {
        if let Err(err) = run("tc", &["qdisc", "del", "dev", "lo", "root"], None) {
            eprintln!("netem: cannot remove the bottleneck: {err}");
        }
    }
}

/// What the relay-only filter passed and dropped, in packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    pub udp_seen: u64,
    /// UDP between a client and the TURN server's listening ports.
    pub turn_udp: u64,
    /// UDP from one relay port to another: media through the relay.
    pub relayed: u64,
    pub udp_dropped: u64,
}

/// Only a TURN server gets through: every UDP packet is dropped except
/// those to or from the server's listening ports (unless TURN runs over
/// TCP, see [`RelayOnly::tcp`]) and those between two relay ports.
/// Relay ports are told apart by number, so move the ephemeral ports out
/// of their range first ([`set_ephemeral_ports`]).
pub struct RelayOnly {
    table: NftTable,
}

impl RelayOnly {
    /// TURN over UDP: clients reach `turn_ports` over UDP.
    pub fn udp(turn_ports: &[u16], relay_ports: RangeInclusive<u16>) -> Result<Self> {
        if turn_ports.is_empty() {
            return Err(NetemError::Invalid("no TURN port given".into()));
        }
        Self::install(Some(turn_ports), relay_ports)
    }

    /// TURN over TCP or TLS: no client UDP at all. Relay-to-relay UDP still
    /// passes: on a real network it runs inside the TURN server's own
    /// network, which here is the same namespace.
    pub fn tcp(relay_ports: RangeInclusive<u16>) -> Result<Self> {
        Self::install(None, relay_ports)
    }

    fn install(turn_ports: Option<&[u16]>, relay_ports: RangeInclusive<u16>) -> Result<Self> {
        let (low, high) = (*relay_ports.start(), *relay_ports.end());
        if low > high {
            return Err(NetemError::Invalid(format!(
                "empty relay range {low}-{high}"
            )));
        }
        let turn_rules = turn_ports.map_or(String::new(), |ports| {
            let set = ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "  udp dport {{ {set} }} counter name \"turn_udp\" accept\n  \
                 udp sport {{ {set} }} counter name \"turn_udp\" accept\n"
            )
        });
        let table = NftTable::create(
            "relayonly",
            &format!(
                r#"counter udp_seen {{}}
counter turn_udp {{}}
counter relayed {{}}
counter udp_dropped {{}}
chain out {{
  type filter hook input priority 0; policy accept;
  meta l4proto udp counter name "udp_seen"
{turn_rules}  udp sport {low}-{high} udp dport {low}-{high} counter name "relayed" accept
  meta l4proto udp counter name "udp_dropped" drop
}}"#
            ),
        )?;
        Ok(Self { table })
    }

    pub fn counters(&self) -> Result<RelayCounters> {
        let [udp_seen, turn_udp, relayed, udp_dropped] =
            self.table
                .packets(["udp_seen", "turn_udp", "relayed", "udp_dropped"])?;
        Ok(RelayCounters {
            udp_seen,
            turn_udp,
            relayed,
            udp_dropped,
        })
    }
}

const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The namespace's ephemeral port range (`net.ipv4.ip_local_port_range`).
pub fn ephemeral_ports() -> Result<RangeInclusive<u16>> {
    let text = std::fs::read_to_string(PORT_RANGE)?;
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(low)), Some(Ok(high))) => Ok(low..=high),
        _ => Err(NetemError::Parse {
            what: "ip_local_port_range",
            detail: text,
        }),
    }
}

/// Sets the namespace's ephemeral port range (the sysctl is per network
/// namespace, so the host is not touched). Sockets bound before keep their
/// ports.
pub fn set_ephemeral_ports(range: RangeInclusive<u16>) -> Result<()> {
    ensure_netns()?;
    std::fs::write(PORT_RANGE, format!("{} {}\n", range.start(), range.end()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_counters_are_read_and_rule_counters_ignored() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "t", "handle": 1}},
            {"counter": {"family": "inet", "name": "udp_seen", "table": "t", "handle": 2, "packets": 4000, "bytes": 96000}},
            {"counter": {"family": "inet", "name": "udp_dropped", "table": "t", "handle": 3, "packets": 201, "bytes": 4824}},
            {"rule": {"family": "inet", "table": "t", "chain": "out", "handle": 4,
              "expr": [{"counter": {"packets": 9, "bytes": 9}}, {"drop": null}]}}]}"#;
        let counters = parse_nft_counters(json).unwrap();
        assert_eq!(counters.len(), 2);
        assert_eq!(
            counters["udp_dropped"],
            Counter {
                packets: 201,
                bytes: 4824
            }
        );
        assert!(parse_nft_counters("not json").is_err());
        let loss = DropCounters {
            udp_seen: counters["udp_seen"].packets,
            udp_dropped: counters["udp_dropped"].packets,
        };
        assert!((loss.dropped_percent() - 5.025).abs() < 1e-9);
        assert_eq!(DropCounters::default().dropped_percent(), 0.0);
    }

    #[test]
    fn the_bottleneck_queue_is_found_by_handle() {
        let json = r#"[{"kind":"htb","handle":"1:","root":true,"bytes":10,"packets":1,"drops":0,"backlog":0,"qlen":0},
            {"kind":"pfifo","handle":"30:","parent":"1:30","options":{"limit":30},
             "bytes":120000,"packets":100,"drops":7,"overlimits":0,"requeues":0,"backlog":3600,"qlen":3}]"#;
        assert_eq!(
            parse_tc_qdisc(json, "30:").unwrap(),
            QueueCounters {
                sent_packets: 100,
                sent_bytes: 120000,
                dropped: 7,
                backlog_packets: 3,
                backlog_bytes: 3600
            }
        );
        assert!(parse_tc_qdisc(json, "40:").is_err());
    }

    #[test]
    fn nothing_is_applied_outside_the_test_namespace() {
        if crate::harness::in_test_netns() {
            return;
        }
        assert!(matches!(
            UdpLoss::start(5.0),
            Err(NetemError::NotInTestNamespace)
        ));
        assert!(matches!(
            UdpBottleneck::start(700, 30),
            Err(NetemError::NotInTestNamespace)
        ));
    }
}
