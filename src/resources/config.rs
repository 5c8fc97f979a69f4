//! `server.properties` rendering: the one place broker and controller configuration is made.
//!
//! The same code renders the ConfigMap the pods read and the configuration of the local brokers
//! the tests run, so the tests prove Kafka accepts what the operator generates. The difference
//! between the two is only [`Environment`]: where nodes listen, how they are addressed, where
//! they keep data.

use std::collections::BTreeMap;

use crate::api::validate::CONTROLLER_NODE_ID_BASE;
use crate::api::{Cluster, Mode};

use super::names::{self, CLIENT_PORT, CONTROLLER_PORT, LOG_DIR, REPLICATION_PORT, Role};

/// `server.properties` as ordered key/value pairs.
pub type Properties = BTreeMap<String, String>;

/// Kafka listeners the operator configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Clients (producers, consumers, admin tools).
    Client,
    /// Broker-to-broker replication.
    Replication,
    /// The KRaft controller quorum.
    Controller,
}

impl Listener {
    pub fn name(self) -> &'static str {
        match self {
            Listener::Client => "CLIENT",
            Listener::Replication => "REPLICATION",
            Listener::Controller => "CONTROLLER",
        }
    }
}

/// Which node a configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A known ordinal (tests, and cluster-wide values such as the quorum voters).
    Ordinal(i32),
    /// Whatever pod reads the file: per-pod values are placeholders the start script fills in
    /// (`${NODE_ID}`, `${POD_NAME}`).
    FromPod,
}

/// Placeholder for the node id in a rendered ConfigMap.
pub const NODE_ID_PLACEHOLDER: &str = "${NODE_ID}";
/// Placeholder for the pod name in a rendered ConfigMap.
pub const POD_NAME_PLACEHOLDER: &str = "${POD_NAME}";

/// Where Kafka nodes run: addresses, ports and data directories.
pub trait Environment {
    /// Host name other nodes and clients use for a node.
    fn host(&self, role: Role, node: Node) -> String;
    /// Port of a listener of a node.
    fn port(&self, role: Role, node: Node, listener: Listener) -> u16;
    /// Address listeners bind to.
    fn bind_host(&self) -> String;
    /// Log directory of a node.
    fn log_dir(&self, role: Role, node: Node) -> String;
}

/// Pods of the cluster's StatefulSets, addressed through their headless Services.
pub struct Kubernetes<'a> {
    pub cluster: &'a Cluster,
}

impl Environment for Kubernetes<'_> {
    fn host(&self, role: Role, node: Node) -> String {
        let c = self.cluster;
        match node {
            Node::Ordinal(i) => names::pod_host(&c.name, &c.namespace, role, i),
            Node::FromPod => format!(
                "{POD_NAME_PLACEHOLDER}.{}.{}.svc.cluster.local",
                names::headless_service(&c.name, role),
                c.namespace
            ),
        }
    }

    fn port(&self, _role: Role, _node: Node, listener: Listener) -> u16 {
        match listener {
            Listener::Client => CLIENT_PORT,
            Listener::Replication => REPLICATION_PORT,
            Listener::Controller => CONTROLLER_PORT,
        }
    }

    fn bind_host(&self) -> String {
        "0.0.0.0".to_string()
    }

    fn log_dir(&self, _role: Role, _node: Node) -> String {
        LOG_DIR.to_string()
    }
}

/// Kafka node id of a node: brokers are their pod ordinal, controllers an offset above.
pub fn node_id(role: Role, ordinal: i32) -> i32 {
    match role {
        Role::Broker => ordinal,
        Role::Controller => CONTROLLER_NODE_ID_BASE + ordinal,
    }
}

fn node_id_value(role: Role, node: Node) -> String {
    match node {
        Node::Ordinal(i) => node_id(role, i).to_string(),
        Node::FromPod => NODE_ID_PLACEHOLDER.to_string(),
    }
}

/// Keys the operator owns; the CRD schema refuses them in `kafkaOptions.config`.
pub const OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "controller.listener.names",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "log.dirs",
    "log.dir",
    "metadata.log.dir",
    "zookeeper.connect",
    "broker.rack",
    "cluster.id",
];

/// `controller.quorum.voters` of a KRaft cluster.
pub fn quorum_voters(cluster: &Cluster, env: &dyn Environment) -> String {
    (0..cluster.controller_count())
        .map(|i| {
            let node = Node::Ordinal(i);
            format!(
                "{}@{}:{}",
                node_id(Role::Controller, i),
                env.host(Role::Controller, node),
                env.port(Role::Controller, node, Listener::Controller)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Defaults an experienced operator sets, sized to the cluster: internal topics replicated
/// as much as the brokers allow (up to 3), writable with one broker down.
fn sized_defaults(cluster: &Cluster) -> Properties {
    let rf = cluster.broker_count.min(3);
    let min_isr = (rf - 1).max(1);
    [
        ("offsets.topic.replication.factor", rf),
        ("transaction.state.log.replication.factor", rf),
        ("transaction.state.log.min.isr", min_isr),
        ("share.coordinator.state.topic.replication.factor", rf),
        ("share.coordinator.state.topic.min.isr", min_isr),
        ("default.replication.factor", rf),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The broker settings the operator does not own: its sized defaults with the spec's
/// settings on top. Every broker and controller of the cluster has the same ones.
pub fn settings(cluster: &Cluster) -> Properties {
    let mut props = sized_defaults(cluster);
    user_settings(cluster, &mut props);
    props
}

/// `props` with its settings (the keys the operator does not own) replaced by `settings`.
pub fn with_settings(props: &Properties, settings: &Properties) -> Properties {
    props
        .iter()
        .filter(|(k, _)| OWNED_KEYS.contains(&k.as_str()))
        .chain(settings)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The spec's settings on top of the defaults; owned keys never come from the user.
fn user_settings(cluster: &Cluster, props: &mut Properties) {
    for (k, v) in &cluster.broker_settings {
        if !OWNED_KEYS.contains(&k.as_str()) {
            props.insert(k.clone(), v.clone());
        }
    }
}

fn listener(env: &dyn Environment, role: Role, node: Node, l: Listener, host: &str) -> String {
    format!("{}://{host}:{}", l.name(), env.port(role, node, l))
}

/// Configuration of a broker.
pub fn broker_properties(cluster: &Cluster, env: &dyn Environment, node: Node) -> Properties {
    let role = Role::Broker;
    let mut props = settings(cluster);

    let bind = env.bind_host();
    let host = env.host(role, node);
    let mut owned = Properties::new();
    let listeners = [Listener::Client, Listener::Replication];
    owned.insert(
        "listeners".into(),
        listeners
            .iter()
            .map(|l| listener(env, role, node, *l, &bind))
            .collect::<Vec<_>>()
            .join(","),
    );
    owned.insert(
        "advertised.listeners".into(),
        listeners
            .iter()
            .map(|l| listener(env, role, node, *l, &host))
            .collect::<Vec<_>>()
            .join(","),
    );
    owned.insert(
        "inter.broker.listener.name".into(),
        Listener::Replication.name().into(),
    );
    owned.insert("log.dirs".into(), env.log_dir(role, node));
    match &cluster.mode {
        Mode::Kraft { .. } => {
            owned.insert("process.roles".into(), "broker".into());
            owned.insert("node.id".into(), node_id_value(role, node));
            owned.insert(
                "controller.quorum.voters".into(),
                quorum_voters(cluster, env),
            );
            owned.insert(
                "controller.listener.names".into(),
                Listener::Controller.name().into(),
            );
            owned.insert(
                "listener.security.protocol.map".into(),
                "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            );
        }
        Mode::ZooKeeper { connect } => {
            owned.insert("broker.id".into(), node_id_value(role, node));
            owned.insert("zookeeper.connect".into(), connect.clone());
            owned.insert(
                "listener.security.protocol.map".into(),
                "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT".into(),
            );
        }
    }
    props.extend(owned);
    props
}

/// Configuration of a KRaft controller.
pub fn controller_properties(cluster: &Cluster, env: &dyn Environment, node: Node) -> Properties {
    let role = Role::Controller;
    // Leader balancing, topic defaults and min.insync.replicas are decided by the controllers
    // in KRaft, so they get the spec's settings too.
    let mut props = settings(cluster);
    let l = Listener::Controller;
    props.extend([
        ("process.roles".to_string(), "controller".to_string()),
        ("node.id".to_string(), node_id_value(role, node)),
        (
            "controller.quorum.voters".to_string(),
            quorum_voters(cluster, env),
        ),
        (
            "controller.listener.names".to_string(),
            l.name().to_string(),
        ),
        (
            "listeners".to_string(),
            listener(env, role, node, l, &env.bind_host()),
        ),
        (
            "advertised.listeners".to_string(),
            listener(env, role, node, l, &env.host(role, node)),
        ),
        (
            "listener.security.protocol.map".to_string(),
            "CONTROLLER:PLAINTEXT".to_string(),
        ),
        ("log.dirs".to_string(), env.log_dir(role, node)),
    ]);
    props
}

/// Renders properties as a `server.properties` file, escaped the way `java.util.Properties`
/// reads them back (`Properties.load`, which Kafka uses, reading the file as ISO-8859-1): every
/// key and value comes back exactly as it was, and no value can start a line of its own.
/// The output is ASCII.
pub fn render(props: &Properties) -> String {
    let mut out = String::new();
    for (k, v) in props {
        escape_into(&mut out, k, true);
        out.push('=');
        escape_into(&mut out, v, false);
        out.push('\n');
    }
    out
}

/// Appends `s` escaped as a properties key or value (what `Properties.store` does, minus the
/// escapes a value never needs, so `listeners=CLIENT://0.0.0.0:9092` stays readable).
///
/// `Properties.load` reads a line terminated by `\n` or `\r`, joins it with the next one when it
/// ends in an odd number of backslashes, skips leading whitespace (space, `\t`, `\f`) and lines
/// whose first character is `#` or `!`. A key ends at the first unescaped `=`, `:` or whitespace;
/// then whitespace and one `=` or `:` are skipped. Escapes: `\t \n \r \f`, `\uXXXX` (UTF-16),
/// and a backslash before any other character stands for that character.
fn escape_into(out: &mut String, s: &str, is_key: bool) {
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            // A key ends at a space; a value's leading spaces are skipped (its first one escaped
            // keeps the rest, which follow a non-whitespace character).
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            // Separators end a key; `#` and `!` would make a line starting with the key a comment.
            '=' | ':' | '#' | '!' if is_key => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            // Other control characters and everything outside ASCII: the file is read as
            // ISO-8859-1, so anything else would come back as different characters.
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{KafkaCluster, validate};

    fn cluster(yaml: &str) -> Cluster {
        let mut kc = KafkaCluster::new("kafka", serde_yaml::from_str(yaml).unwrap());
        kc.metadata.namespace = Some("prod".into());
        validate(&kc).unwrap()
    }

    #[test]
    fn broker_in_kraft_mode() {
        let c = cluster(
            "brokerCount: 3\nkafkaOptions: {logRetentionHours: 24, config: {num.io.threads: '16'}}",
        );
        let p = broker_properties(&c, &Kubernetes { cluster: &c }, Node::FromPod);
        assert_eq!(p["process.roles"], "broker");
        assert_eq!(p["node.id"], "${NODE_ID}");
        assert_eq!(
            p["advertised.listeners"],
            "CLIENT://${POD_NAME}.kafka.prod.svc.cluster.local:9092,REPLICATION://${POD_NAME}.kafka.prod.svc.cluster.local:9091"
        );
        assert_eq!(
            p["listeners"],
            "CLIENT://0.0.0.0:9092,REPLICATION://0.0.0.0:9091"
        );
        assert_eq!(
            p["controller.quorum.voters"],
            "9000@kafka-controller-0.kafka-controllers.prod.svc.cluster.local:9093,\
             9001@kafka-controller-1.kafka-controllers.prod.svc.cluster.local:9093,\
             9002@kafka-controller-2.kafka-controllers.prod.svc.cluster.local:9093"
        );
        assert_eq!(p["log.retention.hours"], "24");
        assert_eq!(p["num.io.threads"], "16");
        assert_eq!(p["offsets.topic.replication.factor"], "3");
        assert!(!p.contains_key("zookeeper.connect"));
    }

    #[test]
    fn internal_topics_fit_small_clusters() {
        let c = cluster("brokerCount: 1");
        let p = broker_properties(&c, &Kubernetes { cluster: &c }, Node::Ordinal(0));
        assert_eq!(p["offsets.topic.replication.factor"], "1");
        assert_eq!(p["transaction.state.log.min.isr"], "1");
        assert_eq!(p["node.id"], "0");
    }

    #[test]
    fn broker_in_zookeeper_mode() {
        let c = cluster("brokerCount: 3\nzookeeperConnect: zk-headless.default.svc.cluster.local");
        let p = broker_properties(&c, &Kubernetes { cluster: &c }, Node::Ordinal(2));
        assert_eq!(p["broker.id"], "2");
        assert_eq!(
            p["zookeeper.connect"],
            "zk-headless.default.svc.cluster.local"
        );
        assert!(!p.contains_key("process.roles"));
        assert!(!p.contains_key("controller.quorum.voters"));
    }

    #[test]
    fn controller_configuration() {
        let c = cluster("brokerCount: 3\ncontrollers: {replicas: 1}\nleaderImbalanceRatio: 0.2");
        let p = controller_properties(&c, &Kubernetes { cluster: &c }, Node::Ordinal(0));
        assert_eq!(p["process.roles"], "controller");
        assert_eq!(p["node.id"], "9000");
        assert_eq!(p["listeners"], "CONTROLLER://0.0.0.0:9093");
        assert_eq!(p["leader.imbalance.per.broker.percentage"], "20");
    }

    #[test]
    fn owned_keys_cannot_be_overridden() {
        let mut c = cluster("brokerCount: 1");
        c.broker_settings
            .insert("log.dirs".into(), "/elsewhere".into());
        c.broker_settings.insert("node.id".into(), "7".into());
        let p = broker_properties(&c, &Kubernetes { cluster: &c }, Node::Ordinal(0));
        assert_eq!(p["log.dirs"], LOG_DIR);
        assert_eq!(p["node.id"], "0");
    }

    #[test]
    fn renders_sorted_properties() {
        let p = Properties::from([("b".into(), "2".into()), ("a".into(), "x\\y".into())]);
        assert_eq!(render(&p), "a=x\\\\y\nb=2\n");
    }

    /// What `java.util.Properties.load(InputStream)` reads from a file, following the JDK's
    /// `Properties.LineReader`, `load0` and `loadConvert`: the bytes are ISO-8859-1 characters;
    /// natural lines end at `\n`, `\r` or `\r\n`; leading whitespace (space, `\t`, `\f`) of a
    /// line is skipped, and so are blank lines and lines whose first other character is `#` or
    /// `!`; a line ending in an odd number of backslashes continues on the next one (whose
    /// leading whitespace is skipped); the key ends at the first unescaped `=`, `:` or
    /// whitespace, after which whitespace and at most one `=` or `:` are skipped; `\t \n \r \f`
    /// and `\uXXXX` are escapes, a backslash before anything else stands for that character.
    /// Later keys replace earlier ones (a Hashtable).
    fn java_load(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
        let chars: Vec<u16> = bytes.iter().map(|&b| u16::from(b)).collect();
        let is_ws = |c: u16| c == 0x20 || c == 0x09 || c == 0x0c;
        let is_eol = |c: u16| c == 0x0a || c == 0x0d;
        let bs = u16::from(b'\\');
        let mut props = BTreeMap::new();
        let mut off = 0;
        loop {
            // LineReader.readLine: one logical line.
            let mut line: Vec<u16> = Vec::new();
            let mut skip_ws = true;
            let mut appended_line_begin = false;
            let mut preceding_backslash = false;
            let mut skip_lf = false;
            let at_eof = loop {
                let Some(&c) = chars.get(off) else {
                    if preceding_backslash {
                        line.pop();
                    }
                    break true;
                };
                off += 1;
                if skip_lf {
                    skip_lf = false;
                    if c == 0x0a {
                        continue;
                    }
                }
                if skip_ws {
                    if is_ws(c) || (!appended_line_begin && is_eol(c)) {
                        continue;
                    }
                    skip_ws = false;
                    appended_line_begin = false;
                }
                if line.is_empty() && (c == u16::from(b'#') || c == u16::from(b'!')) {
                    while off < chars.len() && !is_eol(chars[off]) {
                        off += 1;
                    }
                    skip_ws = true;
                    continue;
                }
                if !is_eol(c) {
                    line.push(c);
                    preceding_backslash = c == bs && !preceding_backslash;
                } else if preceding_backslash {
                    line.pop();
                    skip_ws = true;
                    appended_line_begin = true;
                    preceding_backslash = false;
                    skip_lf = c == 0x0d;
                } else {
                    break false;
                }
            };
            if line.is_empty() {
                if at_eof {
                    return Ok(props);
                }
                continue;
            }
            // load0: split key and value.
            let (mut key_len, mut value_start) = (0, line.len());
            let mut has_sep = false;
            let mut preceding_backslash = false;
            while key_len < line.len() {
                let c = line[key_len];
                if (c == u16::from(b'=') || c == u16::from(b':')) && !preceding_backslash {
                    value_start = key_len + 1;
                    has_sep = true;
                    break;
                } else if is_ws(c) && !preceding_backslash {
                    value_start = key_len + 1;
                    break;
                }
                preceding_backslash = c == bs && !preceding_backslash;
                key_len += 1;
            }
            while value_start < line.len() {
                let c = line[value_start];
                if !is_ws(c) {
                    if !has_sep && (c == u16::from(b'=') || c == u16::from(b':')) {
                        has_sep = true;
                    } else {
                        break;
                    }
                }
                value_start += 1;
            }
            let key = load_convert(&line[..key_len])?;
            let value = load_convert(&line[value_start..])?;
            props.insert(key, value);
            if at_eof {
                return Ok(props);
            }
        }
    }

    fn load_convert(s: &[u16]) -> Result<String, String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            i += 1;
            if c != u16::from(b'\\') {
                out.push(c);
                continue;
            }
            // The line reader never leaves a lone backslash at the end of a line.
            let e = s[i];
            i += 1;
            out.push(match e {
                0x75 /* u */ => {
                    let hex = s.get(i..i + 4).ok_or("Malformed \\uxxxx encoding.")?;
                    i += 4;
                    let hex = String::from_utf16(hex).map_err(|e| e.to_string())?;
                    u16::from_str_radix(&hex, 16).map_err(|_| "Malformed \\uxxxx encoding.")?
                }
                0x74 => 0x09,
                0x72 => 0x0d,
                0x6e => 0x0a,
                0x66 => 0x0c,
                other => other,
            });
        }
        String::from_utf16(&out).map_err(|e| e.to_string())
    }

    fn props(pairs: &[(&str, &str)]) -> Properties {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The reader above agrees with the examples of the `Properties.load` Javadoc and the
    /// parsing rules it describes, so the round trips below check what Kafka would read.
    #[test]
    fn java_reader_follows_the_properties_javadoc() {
        let file = "Truth = Beauty\n  Truth:Beauty\nTruth                    :Beauty\n\
                    fruits                           apple, banana, pear, \\\n\
                    \x20                                 cantaloupe, watermelon, \\\n\
                    \x20                                 kiwi, mango\n\
                    cheeses\n\
                    # a comment = x\n   ! another\n\n\
                    k\\ ey\\=x=\\u0041\\tb\\zc \n\
                    a=b\rc=d\r\ne==f\n#\\\nnot.continued=1\n\
                    cont=x\\\n#y\n\
                    last=z\\";
        assert_eq!(
            java_load(file.as_bytes()).unwrap(),
            props(&[
                ("Truth", "Beauty"),
                (
                    "fruits",
                    "apple, banana, pear, cantaloupe, watermelon, kiwi, mango"
                ),
                ("cheeses", ""),
                ("k ey=x", "A\tbzc "),
                ("a", "b"),
                ("c", "d"),
                ("e", "=f"),
                ("not.continued", "1"),
                ("cont", "x#y"),
                ("last", "z"),
            ])
        );
        assert!(java_load(b"k=\\u12").is_err());
    }

    #[test]
    fn escapes_like_java_properties() {
        let p = props(&[
            (" a b=c:d#e!f", " lead\ttab\nnl\rcr\u{c}ff"),
            ("#k", "#v!=:"),
            ("k", "caf\u{e9} \u{1F600}\u{0}\u{7f}"),
        ]);
        assert_eq!(
            render(&p),
            "\\ a\\ b\\=c\\:d\\#e\\!f=\\ lead\\ttab\\nnl\\rcr\\fff\n\
             \\#k=#v!=:\n\
             k=caf\\u00E9 \\uD83D\\uDE00\\u0000\\u007F\n"
        );
    }

    #[test]
    fn every_key_and_value_reads_back_as_written() {
        let nasty = [
            ("plain", "value"),
            (
                "listeners",
                "CLIENT://0.0.0.0:9092,REPLICATION://0.0.0.0:9091",
            ),
            ("empty", ""),
            ("spaces", "   three leading, two trailing  "),
            ("tabs", "\t\ttab\t"),
            ("newline", "1\nnode.id=7"),
            ("crlf", "1\r\nnode.id=7\r"),
            ("cr", "x\rlog.dirs=/elsewhere"),
            ("formfeed", "\u{c}x\u{c}"),
            ("backslash.end", "C:\\dir\\"),
            ("backslashes", "\\\\\\n\\u0041"),
            ("continuation", "x\\\n  node.id=7"),
            ("comment.like", "#!"),
            ("sep.first", "=:value"),
            ("unicode", "caf\u{e9} \u{4e2d}\u{6587} \u{1F600}"),
            ("controls", "\u{0}\u{1}\u{1b}[31m\u{7f}\u{85}\u{2028}"),
            ("placeholder", "${NODE_ID}@${POD_NAME}"),
            ("", "empty key"),
            (" leading.space.key", "v"),
            ("key with spaces", "v"),
            ("key=with:separators", "v"),
            ("#comment.key", "v"),
            ("!bang.key", "v"),
            ("key\nnode.id", "7"),
            ("key\\", "v"),
            ("\t\u{c}ws.key", "v"),
        ];
        let p = props(&nasty);
        let rendered = render(&p);
        assert!(rendered.is_ascii(), "{rendered}");
        // One line per property: nothing a value or key holds starts a line of its own.
        assert_eq!(rendered.lines().count(), p.len(), "{rendered}");
        assert_eq!(java_load(rendered.as_bytes()).unwrap(), p, "{rendered}");
    }

    #[test]
    fn random_keys_and_values_read_back_as_written() {
        let alphabet: Vec<char> =
            "aZ0.  \t\n\r\u{c}\u{b}\u{0}\u{7f}\\\\=:#!un${}\u{e9}\u{85}\u{ff}\u{100}\u{2028}\u{feff}\u{1F600}"
                .chars()
                .collect();
        // xorshift64: deterministic, no dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..500 {
            let mut p = Properties::new();
            for _ in 0..1 + next(8) {
                let mut word = |max: usize| -> String {
                    (0..next(max))
                        .map(|_| alphabet[next(alphabet.len())])
                        .collect()
                };
                p.insert(word(12), word(24));
            }
            let rendered = render(&p);
            assert!(rendered.is_ascii());
            assert_eq!(rendered.lines().count(), p.len(), "{rendered:?}");
            assert_eq!(java_load(rendered.as_bytes()).unwrap(), p, "{rendered:?}");
        }
    }

    #[test]
    fn a_config_value_cannot_set_operator_owned_keys() {
        let mut c = cluster("brokerCount: 3");
        c.broker_settings
            .insert("zzz.x".into(), "1\nnode.id=7\nlog.dirs=/tmp".into());
        c.broker_settings
            .insert("aaa.y".into(), "2\r\nprocess.roles=controller".into());
        let expected = broker_properties(&c, &Kubernetes { cluster: &c }, Node::FromPod);
        let rendered = render(&expected);
        let read = java_load(rendered.as_bytes()).unwrap();
        assert_eq!(read, expected, "{rendered}");
        assert_eq!(read["node.id"], NODE_ID_PLACEHOLDER);
        assert_eq!(read["log.dirs"], LOG_DIR);
        assert_eq!(read["process.roles"], "broker");
        assert_eq!(read["zzz.x"], "1\nnode.id=7\nlog.dirs=/tmp");
        assert!(rendered.contains("zzz.x=1\\nnode.id=7\\nlog.dirs=/tmp\n"));
        // The per-pod placeholders the start script fills in are left as they are.
        assert!(rendered.contains("\nnode.id=${NODE_ID}\n"), "{rendered}");
    }
}
