//! Tests of the conf: every bad value gets an error that names its key.

use super::*;

const KEY_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn sample(dir: &Path) -> String {
    std::fs::write(dir.join("rota.seed"), "00".repeat(32)).unwrap();
    std::fs::write(dir.join("genesis.json"), "{}").unwrap();
    format!(
        r#"
chain = "test"
[listen]
ipv4 = "127.0.0.1:4000"
peering = "127.0.0.1:4100"
[schedule]
slot_ms = 2000
blackout_ms = 600
tolerance_ms = 200
[[servers]]
public_key = "{KEY_A}"
address = "127.0.0.1:4000"
peering = "127.0.0.1:4100"
[[servers]]
public_key = "{KEY_B}"
address = "127.0.0.1:4001"
peering = "127.0.0.1:4101"
"#
    )
}

fn load(text: &str, dir: &Path) -> Result<Config> {
    let path = dir.join("rota.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path, Role::Server)
}

fn error(text: &str, dir: &Path) -> String {
    load(text, dir).unwrap_err().to_string()
}

#[test]
fn a_good_conf_loads_with_defaults_and_resolved_paths() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&sample(dir.path()), dir.path()).unwrap();
    assert_eq!(config.peering.heartbeat_ms, 5_000);
    assert_eq!(config.archive.keep, 10);
    assert_eq!(config.data_dir, dir.path().join("data"));
    assert_eq!(config.server_list().majority(), 2);
    assert_eq!(config.schedule().slot_ms, 2000);
}

#[test]
fn an_unknown_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace("slot_ms", "slotms");
    let err = error(&text, dir.path());
    assert!(err.contains("unknown field `slotms`"), "{err}");
}

#[test]
fn a_malformed_key_is_named_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace(KEY_B, "abc");
    let err = error(&text, dir.path());
    assert!(
        err.contains("servers[2].public_key") && err.contains("64 hex"),
        "{err}"
    );
}

#[test]
fn a_duplicate_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace(KEY_B, KEY_A);
    let err = error(&text, dir.path());
    assert!(
        err.contains("servers[2].public_key") && err.contains("listed twice"),
        "{err}"
    );
    let text = sample(dir.path()).replace("4001", "4000");
    let err = error(&text, dir.path());
    assert!(
        err.contains("servers[2].address") && err.contains("listed twice"),
        "{err}"
    );
}

#[test]
fn a_quarter_slot_must_exceed_the_clock_bound() {
    let dir = tempfile::tempdir().unwrap();
    // Valid for the windows (700 > 2 x 300, 700 < 1000), but a quarter slot
    // (250 ms) leaves no time for a vote once clocks may differ by 300 ms.
    let text = sample(dir.path())
        .replace("slot_ms = 2000", "slot_ms = 1000")
        .replace("blackout_ms = 600", "blackout_ms = 700")
        .replace("tolerance_ms = 200", "tolerance_ms = 300");
    let err = error(&text, dir.path());
    assert!(
        err.contains("schedule.slot_ms") && err.contains("no delay bound"),
        "{err}"
    );
}

#[test]
fn blackout_must_exceed_twice_the_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace("blackout_ms = 600", "blackout_ms = 400");
    let err = error(&text, dir.path());
    assert!(
        err.contains("schedule.blackout_ms") && err.contains("2 x"),
        "{err}"
    );
}

#[test]
fn an_unparseable_address_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace("ipv4 = \"127.0.0.1:4000\"", "ipv4 = \"localhost\"");
    let err = error(&text, dir.path());
    assert!(
        err.contains("listen.ipv4") && err.contains("not an address"),
        "{err}"
    );
    let text = sample(dir.path()).replace("ipv4 = \"127.0.0.1:4000\"", "ipv4 = \"[::1]:4000\"");
    let err = error(&text, dir.path());
    assert!(err.contains("not an IPv4 address"), "{err}");
}

#[test]
fn missing_seed_and_genesis_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path());
    std::fs::remove_file(dir.path().join("genesis.json")).unwrap();
    let err = error(&text, dir.path());
    assert!(
        err.contains("genesis_file") && err.contains("does not exist"),
        "{err}"
    );
    let text = sample(dir.path());
    std::fs::remove_file(dir.path().join("rota.seed")).unwrap();
    let err = error(&text, dir.path());
    assert!(
        err.contains("seed_file") && err.contains("rota keygen"),
        "{err}"
    );
}

#[test]
fn a_key_missing_from_the_list_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&sample(dir.path()), dir.path()).unwrap();
    let err = config
        .identify(&PublicKey([3; 32]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not in the list"), "{err}");
    assert_eq!(
        config.identify(&KEY_B.parse().unwrap()).unwrap(),
        ServerId(2)
    );
}

#[test]
fn a_chain_of_several_servers_needs_its_peering_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace("peering = \"127.0.0.1:4100\"\n[schedule]", "[schedule]");
    let err = error(&text, dir.path());
    assert!(
        err.contains("listen.peering")
            && err.contains("a chain of 2 servers needs a peering socket")
            && err.contains("\"host:port\""),
        "{err}"
    );
    let text = sample(dir.path()).replace("peering = \"127.0.0.1:4101\"\n", "");
    let err = error(&text, dir.path());
    assert!(
        err.contains("servers[2].peering: missing") && err.contains("\"host:port\""),
        "{err}"
    );
}

#[test]
fn a_one_server_chain_may_leave_its_peering_socket_out() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path());
    let one = &text[..text.rfind("[[servers]]").unwrap()];
    let config = load(one, dir.path()).unwrap();
    assert_eq!(config.listen_peering(), "127.0.0.1:4100".parse().ok());
    // Both the bind address and the server's own entry go.
    let bare = one.replace("peering = \"127.0.0.1:4100\"\n", "");
    let config = load(&bare, dir.path()).unwrap();
    assert_eq!(config.listen_peering(), None);
    assert_eq!(config.server_peering(ServerId(1)), None);
}

#[test]
fn peering_addresses_are_apart_from_the_client_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace("\"127.0.0.1:4101\"", "\"127.0.0.1:4000\"");
    let err = error(&text, dir.path());
    assert!(
        err.contains("servers[2].peering")
            && err.contains("127.0.0.1:4000 is also servers[1].address"),
        "{err}"
    );
    let text = sample(dir.path()).replace("\"127.0.0.1:4101\"", "\"127.0.0.1:4100\"");
    let err = error(&text, dir.path());
    assert!(err.contains("is also servers[1].peering"), "{err}");
    let text = sample(dir.path()).replace(
        "peering = \"127.0.0.1:4100\"\n[schedule]",
        "peering = \"0.0.0.0:4000\"\n[schedule]",
    );
    let err = error(&text, dir.path());
    assert!(
        err.contains("listen.peering") && err.contains("clashes with listen.ipv4"),
        "{err}"
    );
    let text = sample(dir.path()).replace(
        "peering = \"127.0.0.1:4100\"\n[schedule]",
        "peering = \"localhost:4100\"\n[schedule]",
    );
    let err = error(&text, dir.path());
    assert!(
        err.contains("listen.peering") && err.contains("not an address"),
        "{err}"
    );
}

#[test]
fn the_peering_frame_limit_has_a_default_and_a_floor() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&sample(dir.path()), dir.path()).unwrap();
    assert_eq!(config.peering.max_message_bytes, 64 * 1024 * 1024);
    let text = sample(dir.path()).replace(
        "[schedule]",
        "[peering]\nmax_message_bytes = 1000\n[schedule]",
    );
    let err = error(&text, dir.path());
    assert!(
        err.contains("peering.max_message_bytes") && err.contains("at least 1048576"),
        "{err}"
    );
}

#[test]
fn a_client_conf_needs_no_peering_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path())
        .replace("peering = \"127.0.0.1:4100\"\n", "")
        .replace("peering = \"127.0.0.1:4101\"\n", "");
    let path = dir.path().join("client.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::load(&path, Role::Client).unwrap();
    assert_eq!(config.server_peering(ServerId(2)), None);
    let err = Config::load(&path, Role::Server).unwrap_err().to_string();
    assert!(err.contains("listen.peering"), "{err}");
}

#[test]
fn a_client_conf_needs_no_listen_table() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace(
        "[listen]\nipv4 = \"127.0.0.1:4000\"\npeering = \"127.0.0.1:4100\"\n",
        "",
    );
    let path = dir.path().join("client.toml");
    std::fs::write(&path, &text).unwrap();
    assert!(Config::load(&path, Role::Client).is_ok());
    let err = Config::load(&path, Role::Server).unwrap_err().to_string();
    assert!(err.contains("[listen]"), "{err}");
}

#[test]
fn the_sample_rig_in_conf_is_valid() {
    let rig = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/rig");
    for i in 1..=3 {
        let config = Config::load(&rig.join(format!("node-{i}/rota.toml")), Role::Server).unwrap();
        let key = rota_peer::keys::load_seed_file(&config.seed_file)
            .unwrap()
            .public();
        assert_eq!(config.identify(&key).unwrap(), ServerId(i));
        assert_eq!(
            config.limits,
            Limits::default(),
            "node-{i} shows the defaults"
        );
        let listen = config.listen.unwrap();
        assert_eq!(listen.max_message_bytes, MESSAGE_BYTES.default);
    }
    Config::load(&rig.join("client.toml"), Role::Client).unwrap();
}

#[test]
fn limits_out_of_their_range_are_named_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let base = sample(dir.path());
    let text = base.replace("[schedule]", "[limits]\nmax_connections = 0\n[schedule]");
    let err = error(&text, dir.path());
    assert!(
        err.contains("limits.max_connections") && err.contains("allowed 1 to 65536"),
        "{err}"
    );
    let text = base.replace("[schedule]", "[limits]\nhandshake_ms = 50\n[schedule]");
    let err = error(&text, dir.path());
    assert!(err.contains("limits.handshake_ms"), "{err}");
    let text = base.replace(
        "ipv4 = \"127.0.0.1:4000\"",
        "ipv4 = \"127.0.0.1:4000\"\nmax_message_bytes = 67108864",
    );
    let err = error(&text, dir.path());
    assert!(
        err.contains("listen.max_message_bytes") && err.contains("512 to 65536"),
        "{err}"
    );
    let text = base.replace("[schedule]", "[limits]\nsend_queue = 64\n[schedule]");
    let config = load(&text, dir.path()).unwrap();
    assert_eq!(config.limits.send_queue, 64);
    assert_eq!(config.limits.receive_queue, Limits::default().receive_queue);
}

#[test]
fn every_default_is_within_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&sample(dir.path()), dir.path()).unwrap();
    assert_eq!(config.limits, Limits::default());
    assert_eq!(
        config.listen.unwrap().max_message_bytes,
        MESSAGE_BYTES.default
    );
}

#[test]
fn a_bad_chain_name_says_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let text = sample(dir.path()).replace("chain = \"test\"", "chain = \"Big Chain\"");
    let err = error(&text, dir.path());
    assert!(err.contains("chain") && err.contains("a-z, 0-9"), "{err}");
}
