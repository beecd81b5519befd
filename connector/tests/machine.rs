//! Deterministic tests of the connector's state machine.
//!
//! The machine has no clock: time is the `u64` of milliseconds given to
//! `step`, so these tests move time by passing a larger number, never by
//! sleeping. This server is always server 1; the others answer when a test
//! says so.
//!
//! Every test drives the machine through [`Rig`], which checks on every step
//! that each state change is reported as one `Output::State` in the step
//! that makes it, and that nothing else is reported as one.

use rota_connector::machine::{
    Answer, Clocks, FIRST_RETRY_MS, Input, Machine, Output, Request, Settings, State, clock,
};
use rota_peer::block::{Block, BlockHeader};
use rota_peer::wire::Status;
use rota_peer::{Hash, ServerId};

const HEARTBEAT: u64 = 1_000;
const MISSED: u32 = 3;
/// The payment tolerance: a clock further than this from the median sits out.
const TOLERANCE: u64 = 500;

/// When [`sampling`] has every other server answer, and so when its machine
/// starts sampling; its first heartbeat round is one heartbeat later.
const SAMPLING_AT: u64 = 10;
const FIRST_ROUND: u64 = SAMPLING_AT + HEARTBEAT;

/// A balance hash, told apart by one byte.
fn hash(byte: u8) -> Hash {
    Hash([byte; 32])
}

/// A committed state: `slot`, the balance hash `hash(balance)`, `height` blocks.
fn status(slot: u64, balance: u8, height: u64) -> Status {
    Status {
        slot,
        balance_hash: hash(balance),
        height,
        // Zero at height 0, as the ledger reports it.
        block_hash: Hash([height as u8; 32]),
    }
}

fn block(number: u64, balance: u8) -> Block {
    Block {
        header: BlockHeader {
            number,
            previous: Hash::default(),
            slot: number,
            timestamp: 0,
            merkle_root: Hash::default(),
            balance_hash: hash(balance),
            difficulty: 0,
            nonce: 0,
        },
        transactions: Vec::new(),
        proof: Vec::new(),
    }
}

fn database(hash: Hash, of: Status) -> Answer {
    Answer::Database {
        hash,
        slot: of.slot,
        height: of.height,
        certified: Vec::new(),
        packed: vec![7; 36],
    }
}

/// A machine under test, checking how it reports its state on every step.
struct Rig {
    machine: Machine,
    /// The last state reported, and every report with its time.
    reported: Option<State>,
    history: Vec<(u64, State)>,
}

impl Rig {
    /// Server 1 of `servers`, holding `own`.
    fn new(servers: usize, own: Status) -> Rig {
        let settings = Settings {
            me: ServerId(1),
            servers,
            heartbeat_ms: HEARTBEAT,
            missed_heartbeats: MISSED,
            tolerance_ms: TOLERANCE,
        };
        Rig {
            machine: Machine::new(settings, own),
            reported: None,
            history: Vec::new(),
        }
    }

    fn state(&self) -> State {
        self.machine.state()
    }

    fn step(&mut self, input: Input, now: u64) -> Vec<Output> {
        let out = self.machine.step(input.clone(), now);
        for state in states(&out) {
            assert_ne!(
                Some(state),
                self.reported,
                "at {now} ms, {input:?} reported {state:?} again without a change: {out:?}"
            );
            self.reported = Some(state);
            self.history.push((now, state));
        }
        assert_eq!(
            self.reported,
            Some(self.machine.state()),
            "at {now} ms, {input:?} left the machine in a state it did not report: {out:?}"
        );
        out
    }

    fn tick(&mut self, now: u64) -> Vec<Output> {
        self.step(Input::Tick, now)
    }

    fn answer(&mut self, from: u32, answer: Answer, now: u64) -> Vec<Output> {
        self.step(
            Input::Answer {
                from: ServerId(from),
                answer,
            },
            now,
        )
    }

    /// A status from a server whose clock agrees with this one's.
    fn status_from(&mut self, from: u32, status: Status, now: u64) -> Vec<Output> {
        let answer = Answer::Status {
            status,
            clock: now,
            echo: now,
            sitting_out: false,
        };
        self.answer(from, answer, now)
    }

    fn own(&mut self, status: Status, now: u64) -> Vec<Output> {
        self.step(Input::Own(status), now)
    }
}

fn states(out: &[Output]) -> Vec<State> {
    out.iter()
        .filter_map(|o| match o {
            Output::State(state) => Some(*state),
            _ => None,
        })
        .collect()
}

fn sends(out: &[Output]) -> Vec<(u32, Request)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, request } => Some((to.0, request.clone())),
            _ => None,
        })
        .collect()
}

/// The servers sent a `register`, each with the status it carried.
fn registers(out: &[Output]) -> Vec<(u32, Status)> {
    sends(out)
        .into_iter()
        .filter_map(|(to, r)| match r {
            Request::Register(status) => Some((to, status)),
            _ => None,
        })
        .collect()
}

/// The servers sent a `heart`, each with the status it carried.
fn hearts(out: &[Output]) -> Vec<(u32, Status)> {
    sends(out)
        .into_iter()
        .filter_map(|(to, r)| match r {
            Request::Heart(status) => Some((to, status)),
            _ => None,
        })
        .collect()
}

fn heart_targets(out: &[Output]) -> Vec<u32> {
    hearts(out).into_iter().map(|(to, _)| to).collect()
}

fn database_requests(out: &[Output]) -> Vec<u32> {
    sends(out)
        .into_iter()
        .filter(|(_, r)| *r == Request::Database)
        .map(|(to, _)| to)
        .collect()
}

fn block_requests(out: &[Output]) -> Vec<(u32, u64)> {
    sends(out)
        .into_iter()
        .filter_map(|(to, r)| match r {
            Request::Block(number) => Some((to, number)),
            _ => None,
        })
        .collect()
}

fn peer_events(out: &[Output]) -> Vec<(u32, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Peer { id, alive } => Some((id.0, *alive)),
            _ => None,
        })
        .collect()
}

fn lost_majority(out: &[Output]) -> Vec<(usize, usize)> {
    out.iter()
        .filter_map(|o| match o {
            Output::LostMajority { alive, needed } => Some((*alive, *needed)),
            _ => None,
        })
        .collect()
}

/// A machine of `servers` servers that registered with all the others, found
/// them all holding `own`, and went to sampling at [`SAMPLING_AT`].
fn sampling(servers: usize, own: Status) -> Rig {
    let mut rig = Rig::new(servers, own);
    rig.tick(0);
    for from in 2..=servers as u32 {
        rig.status_from(from, own, SAMPLING_AT);
    }
    assert_eq!(rig.state(), State::Sampling);
    rig
}

/// A sampling machine told at `at` that it is out of sync, so in
/// hash-compare with every status it knew from before `at`.
fn hash_compare(servers: usize, own: Status, at: u64) -> Rig {
    assert!(at < FIRST_ROUND, "no heartbeat round before hash-compare");
    let mut rig = sampling(servers, own);
    let out = rig.step(Input::OutOfSync, at);
    assert_eq!(states(&out), [State::HashCompare]);
    rig
}

/// When [`fetching`] enters fetch-snapshot.
const FETCH_AT: u64 = 520;

/// A machine of three holding `own` whose two peers both hold `target`: it
/// decided at [`FETCH_AT`] to fetch `target`. Returns what it sent then.
fn fetching(own: Status, target: Status) -> (Rig, Vec<Output>) {
    let mut rig = hash_compare(3, own, 500);
    rig.status_from(2, target, 510);
    let out = rig.status_from(3, target, FETCH_AT);
    assert_eq!(states(&out), [State::FetchSnapshot]);
    (rig, out)
}

/// One sampling round: tick at `at`, then the `answering` servers answer
/// their heartbeat with `with` a few milliseconds later. Returns the tick's
/// outputs and the answers' outputs.
fn round(rig: &mut Rig, at: u64, answering: &[u32], with: Status) -> (Vec<Output>, Vec<Output>) {
    let ticked = rig.tick(at);
    let mut answered = Vec::new();
    for &from in answering {
        answered.extend(rig.status_from(from, with, at + 5));
    }
    (ticked, answered)
}

// --- a single server -------------------------------------------------------

#[test]
fn single_server_goes_straight_to_sampling() {
    let own = status(3, 1, 2);
    let mut rig = Rig::new(1, own);
    let out = rig.tick(0);
    assert_eq!(
        out,
        [
            Output::State(State::Connecting),
            Output::State(State::HashCompare),
            Output::State(State::Sampling),
        ]
    );
    // Alone, it is its own majority: it stays, and has no one to ask.
    for at in (1..=10).map(|n| n * HEARTBEAT) {
        assert_eq!(rig.tick(at), [], "at {at} ms");
    }
    assert_eq!(rig.state(), State::Sampling);
    assert_eq!(rig.machine.alive(), 1);
}

// --- connecting ------------------------------------------------------------

#[test]
fn connecting_sends_register_to_every_other_server() {
    let own = status(3, 1, 2);
    let settings = Settings {
        me: ServerId(3),
        servers: 5,
        heartbeat_ms: HEARTBEAT,
        missed_heartbeats: MISSED,
        tolerance_ms: TOLERANCE,
    };
    let mut machine = Machine::new(settings, own);
    assert_eq!(machine.state(), State::Connecting);
    let out = machine.step(Input::Tick, 0);
    assert_eq!(states(&out), [State::Connecting]);
    assert_eq!(registers(&out), [(1, own), (2, own), (4, own), (5, own)]);
    assert_eq!(sends(&out).len(), 4, "only registrations: {out:?}");
    assert_eq!(machine.state(), State::Connecting);
}

#[test]
fn connecting_moves_on_with_two_of_three() {
    let own = status(3, 1, 2);
    let mut rig = Rig::new(3, own);
    rig.tick(0);
    // No answer: it keeps trying, and does not move on.
    for at in (1..=20).map(|n| n * 500) {
        rig.tick(at);
        assert_eq!(rig.state(), State::Connecting, "at {at} ms");
    }
    // One answer and this server make two of three.
    let out = rig.status_from(3, own, 10_010);
    assert_eq!(peer_events(&out), [(3, true)]);
    assert_eq!(states(&out), [State::HashCompare]);
}

#[test]
fn connecting_moves_on_with_three_of_five_and_not_before() {
    let own = status(3, 1, 2);
    let mut rig = Rig::new(5, own);
    rig.tick(0);
    let out = rig.status_from(4, own, 10);
    assert_eq!(states(&out), [], "two of five is not a majority");
    // A refusal is a sign of life, not a registration.
    let out = rig.answer(2, Answer::Refused("stale".into()), 20);
    assert_eq!(peer_events(&out), [(2, true)]);
    assert_eq!(states(&out), [], "a refused registration does not count");
    for at in (1..=20).map(|n| n * 500) {
        rig.tick(at);
        assert_eq!(rig.state(), State::Connecting, "at {at} ms");
    }
    let out = rig.status_from(5, own, 10_010);
    assert_eq!(states(&out), [State::HashCompare]);
}

#[test]
fn connecting_asks_unanswered_servers_again_with_a_growing_capped_backoff() {
    let own = status(3, 1, 2);
    let mut rig = Rig::new(5, own);
    let out = rig.tick(0);
    assert_eq!(registers(&out).len(), 4);
    rig.status_from(2, own, 5);

    let mut last = 0;
    let mut gaps = Vec::new();
    for _ in 0..12 {
        let due = rig.machine.next_deadline();
        assert_eq!(rig.tick(due - 1), [], "nothing before {due} ms");
        let out = rig.tick(due);
        let asked: Vec<u32> = registers(&out).into_iter().map(|(to, _)| to).collect();
        assert_eq!(asked, [3, 4, 5], "only the unanswered, at {due} ms");
        assert_eq!(rig.state(), State::Connecting);
        gaps.push(due - last);
        last = due;
    }
    // Doubling from the first retry, then held at eight heartbeats.
    let doubling = std::iter::successors(Some(FIRST_RETRY_MS), |gap| Some(gap * 2));
    let expected: Vec<u64> = doubling
        .map(|gap| gap.min(8 * HEARTBEAT))
        .take(gaps.len())
        .collect();
    assert_eq!(gaps, expected);
    assert_eq!(gaps.last(), Some(&(8 * HEARTBEAT)), "the cap is reached");
}

// --- hash-compare ----------------------------------------------------------

#[test]
fn hash_compare_asks_every_other_server_for_its_status() {
    let own = status(3, 1, 2);
    let mut rig = Rig::new(5, own);
    rig.tick(0);
    rig.status_from(2, own, 10);
    let out = rig.status_from(3, own, 20);
    assert_eq!(states(&out), [State::HashCompare]);
    assert_eq!(
        hearts(&out),
        [(2, own), (3, own), (4, own), (5, own)],
        "every other server, registered or not"
    );
}

#[test]
fn hash_compare_goes_to_sampling_when_a_majority_holds_own_hash_and_height() {
    let own = status(3, 1, 2);
    let mut rig = hash_compare(5, own, 500);
    rig.status_from(2, own, 510);
    rig.status_from(4, own, 520);
    // Three of five, but servers 3 and 5 may still answer: wait the round
    // out, asking the silent ones again meanwhile.
    let out = rig.tick(500 + HEARTBEAT - 1);
    assert_eq!(states(&out), []);
    assert_eq!(heart_targets(&out), [3, 5]);
    assert_eq!(rig.state(), State::HashCompare);
    let out = rig.tick(500 + HEARTBEAT);
    assert_eq!(states(&out), [State::Sampling]);
}

#[test]
fn hash_compare_decides_as_soon_as_every_server_answered() {
    let own = status(3, 1, 2);
    let mut rig = hash_compare(3, own, 500);
    let out = rig.status_from(3, own, 510);
    assert_eq!(states(&out), [], "server 2 has not answered");
    let out = rig.status_from(2, own, 520);
    assert_eq!(states(&out), [State::Sampling]);
}

#[test]
fn hash_compare_does_not_count_statuses_from_before_it_asked() {
    let own = status(3, 1, 2);
    // Both peers reported `own` while sampling, before hash-compare began.
    let mut rig = hash_compare(3, own, 500);
    let out = rig.tick(500 + HEARTBEAT);
    assert_eq!(states(&out), [], "old statuses are no majority");
    assert_eq!(heart_targets(&out), [2, 3]);
    assert_eq!(rig.state(), State::HashCompare);
}

#[test]
fn hash_compare_fetches_the_database_from_the_majority_holding_another_hash() {
    let own = status(3, 1, 2);
    let mut rig = hash_compare(5, own, 500);
    let theirs = |height| status(4, 2, height);
    rig.status_from(2, theirs(3), 510);
    rig.status_from(3, theirs(5), 511);
    rig.status_from(4, theirs(4), 512);
    // Server 5 agrees with this server: two against three.
    let out = rig.status_from(5, own, 513);
    assert_eq!(states(&out), [State::FetchSnapshot]);
    let asked = database_requests(&out);
    assert_eq!(asked.len(), 1, "one database request: {out:?}");
    assert!([2, 3, 4].contains(&asked[0]), "from the majority: {out:?}");
}

#[test]
fn hash_compare_with_the_same_hash_but_more_blocks_fetches_blocks_only() {
    let own = status(3, 1, 2);
    let theirs = status(3, 1, 5);
    let (_, out) = fetching(own, theirs);
    assert_eq!(database_requests(&out), [], "the database already matches");
    let asked = block_requests(&out);
    let source = asked[0].0;
    assert!([2, 3].contains(&source));
    assert_eq!(asked, [(source, 3), (source, 4), (source, 5)]);
}

#[test]
fn hash_compare_with_the_same_hash_and_height_at_a_later_slot_fetches_the_database() {
    // Rounds without payments leave the hash and the height as they were:
    // only the slot says this server missed them, and their rounds may be
    // held by no one any more (every server restarted). The database comes
    // with the commit certificate of the later slot.
    let own = status(3, 1, 2);
    let target = status(6, 1, 2);
    let (mut rig, out) = fetching(own, target);
    let source = database_requests(&out)[0];
    assert!([2, 3].contains(&source), "{out:?}");
    let out = rig.answer(source, database(target.balance_hash, target), 530);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Install { slot: 6, .. })),
        "{out:?}"
    );
    // Installed: this server holds the slot too, and compares again.
    let out = rig.own(target, 540);
    assert_eq!(states(&out), [State::HashCompare]);
}

#[test]
fn sampling_goes_to_hash_compare_when_a_majority_is_at_a_later_slot_with_the_same_state() {
    let own = status(4, 1, 1);
    let later = status(6, 1, 1);
    let mut rig = sampling(3, own);
    round(&mut rig, FIRST_ROUND, &[2, 3], later);
    round(&mut rig, FIRST_ROUND + HEARTBEAT, &[2, 3], later);
    let out = rig.tick(FIRST_ROUND + 2 * HEARTBEAT);
    assert_eq!(states(&out), [State::HashCompare]);
}

#[test]
fn hash_compare_asks_a_silent_server_again_soon_and_decides_on_its_answer() {
    // Server 3's first `heart` was lost (sent before its connection was
    // up): without it, one status against one is no majority.
    let own = status(3, 1, 2);
    let theirs = status(4, 2, 3);
    let mut rig = hash_compare(3, own, 500);
    rig.status_from(2, theirs, 510);
    let retries: Vec<u64> = std::iter::from_fn(|| {
        let at = rig.machine.next_deadline();
        (at < 500 + HEARTBEAT).then(|| {
            assert_eq!(heart_targets(&rig.tick(at)), [3], "at {at}");
            at
        })
    })
    .collect();
    // After the first retry, then doubling, within the round.
    let expected: Vec<u64> = std::iter::successors(Some(FIRST_RETRY_MS), |gap| Some(gap * 2))
        .scan(500, |at, gap| {
            *at += gap;
            Some(*at)
        })
        .take_while(|at| *at < 500 + HEARTBEAT)
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    assert_eq!(retries, expected);
    // Server 3 answers the last retry: the round decides at once, not a
    // heartbeat after it began.
    let last = *retries.last().unwrap();
    let out = rig.status_from(3, theirs, last + 5);
    assert_eq!(states(&out), [State::FetchSnapshot]);
}

#[test]
fn hash_compare_without_a_majority_asks_again_after_a_heartbeat() {
    let own = status(3, 1, 2);
    let mut rig = hash_compare(3, own, 500);
    rig.status_from(2, status(4, 2, 3), 510);
    assert_eq!(
        heart_targets(&rig.tick(500 + HEARTBEAT - 1)),
        [3],
        "the silent one"
    );
    // One against one, and server 3 silent: ask everyone again.
    let out = rig.tick(500 + HEARTBEAT);
    assert_eq!(states(&out), []);
    assert_eq!(heart_targets(&out), [2, 3]);
    assert_eq!(
        rig.machine.next_deadline(),
        500 + HEARTBEAT + FIRST_RETRY_MS,
        "a new round, whose silent servers are asked again soon"
    );
    assert_eq!(rig.state(), State::HashCompare);
}

#[test]
fn hash_compare_without_a_majority_waits_a_heartbeat_even_when_every_server_answered() {
    let own = status(3, 1, 2);
    let mut rig = hash_compare(3, own, 500);
    rig.status_from(2, status(4, 2, 3), 510);
    // Three servers, three hashes: deciding early cannot find a majority,
    // and asking again at once would loop as fast as the servers answer.
    let out = rig.status_from(3, status(4, 3, 3), 520);
    assert_eq!(states(&out), []);
    assert_eq!(sends(&out), [], "no new round before the heartbeat");
    assert_eq!(rig.tick(500 + HEARTBEAT - 1), []);
    let out = rig.tick(500 + HEARTBEAT);
    assert_eq!(states(&out), []);
    assert_eq!(heart_targets(&out), [2, 3]);
    assert_eq!(rig.state(), State::HashCompare);
}

// --- fetch-snapshot --------------------------------------------------------

#[test]
fn fetch_installs_a_database_with_the_expected_hash() {
    let own = status(3, 1, 2);
    let target = status(4, 2, 2);
    let (mut rig, out) = fetching(own, target);
    let source = database_requests(&out)[0];
    let out = rig.answer(source, database(target.balance_hash, target), 530);
    assert_eq!(
        out,
        [Output::Install {
            slot: target.slot,
            hash: target.balance_hash,
            certified: Vec::new(),
            packed: vec![7; 36],
        }]
    );
    assert_eq!(rig.state(), State::FetchSnapshot);
}

#[test]
fn fetch_with_an_unexpected_database_hash_compares_again() {
    let own = status(3, 1, 2);
    let target = status(4, 2, 2);
    let (mut rig, out) = fetching(own, target);
    let source = database_requests(&out)[0];
    let out = rig.answer(source, database(hash(9), status(5, 9, 2)), 530);
    assert_eq!(states(&out), [State::HashCompare]);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Install { .. })),
        "nothing to install: {out:?}"
    );
    assert_eq!(heart_targets(&out), [2, 3]);
}

#[test]
fn fetch_requests_blocks_a_window_at_a_time_from_own_height() {
    let own = status(3, 1, 5);
    let target = status(9, 2, 40);
    let (mut rig, mut out) = fetching(own, target);
    let source = database_requests(&out)[0];
    rig.answer(source, database(target.balance_hash, target), 530);
    // The ledger installed the database; it still has its 5 blocks. The
    // first window went with the database request, and none of it came
    // yet: nothing more is asked for.
    let mut now = 600;
    assert_eq!(block_requests(&rig.own(status(9, 2, 5), now)), []);
    let mut next = 6;
    let mut windows = Vec::new();
    loop {
        let asked = block_requests(&out);
        assert!(!asked.is_empty(), "blocks from {next} on: {out:?}");
        let numbers: Vec<u64> = asked.iter().map(|(_, n)| *n).collect();
        let last = next + asked.len() as u64 - 1;
        assert_eq!(numbers, (next..=last).collect::<Vec<_>>());
        assert!(asked.iter().all(|(to, _)| *to == source), "{asked:?}");
        assert!(last <= target.height);
        windows.push(asked.len());
        for number in next..=last {
            now += 1;
            let out = rig.answer(source, Answer::Block(block(number, 2)), now);
            assert_eq!(out, [Output::Blocks(vec![block(number, 2)])]);
        }
        // The ledger appends them one by one; the next window waits for all.
        for height in next..last {
            now += 1;
            assert_eq!(rig.own(status(9, 2, height), now), [], "at height {height}");
        }
        now += 1;
        out = rig.own(status(9, 2, last), now);
        if last == target.height {
            break;
        }
        next = last + 1;
    }
    assert_eq!(windows[0], 4, "the early window, asked with the database");
    assert_eq!(windows[1], 16);
    assert_eq!(states(&out), [State::HashCompare]);
}

#[test]
fn blocks_asked_with_the_database_are_held_until_it_is_installed() {
    let own = status(3, 1, 5);
    let target = status(9, 2, 40);
    let (mut rig, out) = fetching(own, target);
    let source = database_requests(&out)[0];
    assert_eq!(
        block_requests(&out),
        [(source, 6), (source, 7), (source, 8), (source, 9)],
        "the early window goes with the database request"
    );
    // Blocks come before the database, out of order, twice, or unasked:
    // nothing reaches the ledger, whose blocks never pass its state.
    for number in [7, 6, 7, 10, 5] {
        assert_eq!(rig.answer(source, Answer::Block(block(number, 2)), 525), []);
    }
    let out = rig.answer(source, database(target.balance_hash, target), 530);
    assert!(out.iter().any(|o| matches!(o, Output::Install { .. })));
    assert_eq!(rig.answer(source, Answer::Block(block(8, 2)), 535), []);
    // Installed: the held blocks go to the ledger in order, once each.
    let out = rig.own(status(9, 2, 5), 600);
    assert_eq!(
        out,
        [Output::Blocks(vec![block(6, 2), block(7, 2), block(8, 2)])]
    );
    // Block 9 comes after: straight to the ledger.
    let out = rig.answer(source, Answer::Block(block(9, 2)), 601);
    assert_eq!(out, [Output::Blocks(vec![block(9, 2)])]);
    // The ledger has them all: the next window.
    let out = rig.own(status(9, 2, 9), 610);
    let asked: Vec<u64> = block_requests(&out).iter().map(|(_, n)| *n).collect();
    assert_eq!(asked, (10..=25).collect::<Vec<_>>());
}

#[test]
fn another_last_block_at_the_same_height_is_asked_for_once_then_times_out() {
    // A majority holds this server's hash and height, with another block
    // id at that height (a server's block differs from the certified one,
    // or a liar claims one): hash-compare does not find it in step, and the
    // fetch asks the source for that block once instead of going back to
    // hash-compare as fast as the servers answer.
    let own = status(3, 1, 5);
    let theirs = Status {
        block_hash: hash(0xbb),
        ..own
    };
    let (mut rig, out) = fetching(own, theirs);
    let asked = block_requests(&out);
    assert_eq!(asked.len(), 1, "{out:?}");
    assert_eq!(asked[0].1, 5, "the block at the shared height");
    assert!(rig.machine.wants_block(5) && !rig.machine.wants_block(6));
    // The ledger reports no change (the block it got is its own): nothing
    // is asked again, and the fetch times out.
    assert_eq!(sends(&rig.own(own, 600)), []);
    assert_eq!(rig.state(), State::FetchSnapshot);
    let out = rig.tick(FETCH_AT + 2_000);
    assert_eq!(states(&out), [State::HashCompare], "{out:?}");
}

#[test]
fn a_fork_reported_before_the_install_asks_for_nothing() {
    let own = status(3, 1, 5);
    let target = status(9, 2, 40);
    let (mut rig, _) = fetching(own, target);
    assert_eq!(rig.step(Input::Fork { from: 3 }, 525), []);
    assert!(
        !rig.machine.wants_block(3),
        "only the early window is wanted"
    );
    assert!(rig.machine.wants_block(6));
}

#[test]
fn a_block_outside_the_window_asked_for_is_dropped() {
    let own = status(3, 1, 5);
    let target = status(9, 2, 40);
    let (mut rig, out) = fetching(own, target);
    let source = database_requests(&out)[0];
    let asked: Vec<u64> = block_requests(&out).iter().map(|(_, n)| *n).collect();
    rig.answer(source, database(target.balance_hash, target), 530);
    rig.own(status(9, 2, 5), 600);
    let (first, last) = (asked[0], *asked.last().unwrap());
    // Blocks nobody asked for: past the window, and before it.
    for number in [last + 1, last + 100, first - 1, 1] {
        let out = rig.answer(source, Answer::Block(block(number, 2)), 601);
        assert_eq!(out, [], "block {number}, window {first}..={last}");
    }
    let out = rig.answer(source, Answer::Block(block(first, 2)), 602);
    assert_eq!(out, [Output::Blocks(vec![block(first, 2)])]);
}

#[test]
fn fetch_after_a_fork_requests_again_from_that_block() {
    let own = status(3, 1, 5);
    let target = status(9, 2, 40);
    let (mut rig, out) = fetching(own, target);
    let source = database_requests(&out)[0];
    assert_eq!(block_requests(&out)[0], (source, 6));
    rig.answer(source, database(target.balance_hash, target), 530);
    rig.own(status(9, 2, 5), 600);
    // Block 6 does not link to this server's block 5: go back to block 3.
    let out = rig.step(Input::Fork { from: 3 }, 610);
    let asked = block_requests(&out);
    assert!(!asked.is_empty());
    assert_eq!(asked[0], (source, 3));
    let numbers: Vec<u64> = asked.iter().map(|(_, n)| *n).collect();
    assert_eq!(numbers, (3..3 + asked.len() as u64).collect::<Vec<_>>());
    assert_eq!(rig.state(), State::FetchSnapshot);
}

#[test]
fn fetch_returns_to_hash_compare_once_the_ledger_reaches_the_target_height() {
    let own = status(3, 1, 2);
    let target = status(3, 1, 4);
    let (mut rig, out) = fetching(own, target);
    let source = block_requests(&out)[0].0;
    rig.answer(source, Answer::Block(block(3, 1)), 530);
    rig.answer(source, Answer::Block(block(4, 1)), 531);
    assert_eq!(rig.own(status(3, 1, 3), 540), []);
    let out = rig.own(target, 550);
    assert_eq!(states(&out), [State::HashCompare]);
    assert_eq!(heart_targets(&out), [2, 3]);
}

#[test]
fn fetch_without_a_database_answer_times_out_to_hash_compare() {
    let own = status(3, 1, 2);
    let target = status(4, 2, 2);
    let (mut rig, _) = fetching(own, target);
    let due = rig.machine.next_deadline();
    assert!(
        due >= FETCH_AT + HEARTBEAT,
        "at least a heartbeat to answer"
    );
    let mut at = FETCH_AT;
    while at < due {
        assert_eq!(rig.tick(at), [], "at {at} ms");
        at += 100;
    }
    let out = rig.tick(due);
    assert_eq!(states(&out), [State::HashCompare]);
    assert_eq!(heart_targets(&out), [2, 3]);
}

#[test]
fn fetch_without_block_answers_times_out_to_hash_compare() {
    let own = status(3, 1, 2);
    let target = status(3, 1, 4);
    let (mut rig, out) = fetching(own, target);
    assert_eq!(block_requests(&out).len(), 2);
    let due = rig.machine.next_deadline();
    assert!(due > FETCH_AT);
    assert_eq!(rig.tick(due - 1), []);
    let out = rig.tick(due);
    assert_eq!(states(&out), [State::HashCompare]);
}

/// Server 2 claims 1,000 blocks; server 3 holds the same certified state
/// with the 5 blocks it really has. A machine of three in hash-compare
/// hears both, server 2 last at [`FETCH_AT`]: returns it, the two statuses
/// and what it did then.
fn liar_and_honest() -> (Rig, Status, Status, Vec<Output>) {
    let (liar, honest) = (status(4, 2, 1_000), status(4, 2, 5));
    let mut rig = hash_compare(3, status(3, 1, 2), 500);
    rig.status_from(3, honest, 510);
    let out = rig.status_from(2, liar, FETCH_AT);
    (rig, liar, honest, out)
}

#[test]
fn a_server_that_claims_blocks_and_never_sends_them_is_passed_over_after_a_timeout() {
    let (mut rig, liar, honest, out) = liar_and_honest();
    assert_eq!(database_requests(&out), [2], "the most blocks claimed");

    // It never answers: after the timeout the next fetch goes to server 3.
    let due = rig.machine.next_deadline();
    let out = rig.tick(due);
    assert_eq!(states(&out), [State::HashCompare]);
    rig.status_from(2, liar, due + 5);
    let out = rig.status_from(3, honest, due + 6);
    assert_eq!(states(&out), [State::FetchSnapshot]);
    assert_eq!(database_requests(&out), [3], "server 2 is passed over");

    // Server 3 delivers; once the ledger holds its state, the machine
    // samples: server 2's claimed height no longer holds it back.
    let at = due + 10;
    rig.answer(3, database(hash(2), honest), at);
    rig.own(status(4, 2, 2), at + 1);
    let out = rig.own(honest, at + 2);
    assert_eq!(states(&out), [State::HashCompare]);
    rig.status_from(2, liar, at + 3);
    let out = rig.status_from(3, honest, at + 4);
    assert_eq!(states(&out), [State::Sampling]);
}

#[test]
fn distrust_ends_and_doubles_when_the_same_server_times_out_again() {
    let (mut rig, liar, honest, _) = liar_and_honest();
    let first = rig.machine.next_deadline();
    let timeout = first - FETCH_AT;
    rig.tick(first);
    // Once the distrust has run out, server 2 is believed again...
    let later = first + timeout;
    rig.step(Input::OutOfSync, later);
    rig.status_from(3, honest, later + 1);
    let out = rig.status_from(2, liar, later + 2);
    assert_eq!(
        database_requests(&out),
        [2],
        "trusted again after {timeout} ms"
    );
    // ...and when it times out again it is passed over for twice as long,
    // and no longer.
    let second = rig.machine.next_deadline();
    rig.tick(second);
    let within = second + 2 * timeout - 10;
    rig.step(Input::OutOfSync, within);
    rig.status_from(3, honest, within + 1);
    let out = rig.status_from(2, liar, within + 2);
    assert_eq!(database_requests(&out), [3], "still passed over");
    let after = second + 2 * timeout;
    rig.step(Input::OutOfSync, after);
    rig.status_from(3, honest, after + 1);
    let out = rig.status_from(2, liar, after + 2);
    assert_eq!(
        database_requests(&out),
        [2],
        "trusted again after twice as long"
    );
}

/// Whether the step handed the ledger a database to install.
fn installs(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::Install { .. }))
}

/// Asks every other server again and has both answer `target`: returns
/// what the second answer made the machine do.
fn compare_again(rig: &mut Rig, target: Status, at: u64) -> Vec<Output> {
    rig.step(Input::OutOfSync, at);
    rig.status_from(2, target, at + 1);
    rig.status_from(3, target, at + 2)
}

#[test]
fn a_database_the_ledger_refuses_gets_its_source_passed_over() {
    let own = status(3, 1, 2);
    let target = status(4, 2, 2);
    let (mut rig, out) = fetching(own, target);
    assert_eq!(database_requests(&out), [2]);
    assert!(installs(&rig.answer(2, database(hash(2), target), 600)));
    // The ledger refused it: it did not check under its certificate.
    let out = rig.step(Input::OutOfSync, 610);
    assert_eq!(states(&out), [State::HashCompare]);
    let out = compare_again(&mut rig, target, 620);
    assert_eq!(database_requests(&out), [3]);
}

#[test]
fn a_slow_install_is_not_its_sources_fault() {
    let own = status(3, 1, 2);
    let target = status(4, 2, 2);
    let (mut rig, _) = fetching(own, target);
    assert!(installs(&rig.answer(2, database(hash(2), target), 600)));
    let due = rig.machine.next_deadline();
    let out = rig.tick(due);
    assert_eq!(states(&out), [State::HashCompare]);
    let out = compare_again(&mut rig, target, due + 10);
    assert_eq!(database_requests(&out), [2], "the source delivered");
}

#[test]
fn a_source_that_moves_on_twice_in_a_row_is_passed_over() {
    let own = status(3, 1, 2);
    let target = status(4, 2, 2);
    let (mut rig, _) = fetching(own, target);
    // Once: an honest server may have committed a round in between.
    let out = rig.answer(2, database(hash(9), target), 600);
    assert_eq!(states(&out), [State::HashCompare]);
    assert!(!installs(&out));
    let out = compare_again(&mut rig, target, 610);
    assert_eq!(database_requests(&out), [2]);
    // Twice: it is passed over.
    rig.answer(2, database(hash(9), target), 700);
    let out = compare_again(&mut rig, target, 710);
    assert_eq!(database_requests(&out), [3]);
    // A late answer from it changes nothing now that server 3 is asked.
    let out = rig.answer(2, database(hash(2), target), 720);
    assert!(!installs(&out) && states(&out).is_empty(), "{out:?}");
    assert_eq!(rig.state(), State::FetchSnapshot);
    assert!(installs(&rig.answer(3, database(hash(2), target), 730)));
}

// --- sampling --------------------------------------------------------------

#[test]
fn sampling_sends_heartbeats_to_every_other_server_each_heartbeat() {
    let own = status(3, 1, 2);
    let mut rig = sampling(5, own);
    let newer = status(4, 2, 3);
    for n in 0..5 {
        let at = FIRST_ROUND + n * HEARTBEAT;
        assert_eq!(rig.tick(at - 1), [], "nothing before {at} ms");
        let carried = if n < 2 { own } else { newer };
        let (out, _) = round(&mut rig, at, &[2, 3, 4, 5], carried);
        assert_eq!(
            hearts(&out),
            [(2, carried), (3, carried), (4, carried), (5, carried)],
            "round {n}"
        );
        assert_eq!(rig.machine.next_deadline(), at + HEARTBEAT);
        if n == 1 {
            // The ledger committed: later heartbeats carry the new status.
            rig.own(newer, at + 500);
        }
    }
    assert_eq!(rig.state(), State::Sampling);
}

#[test]
fn sampling_reports_a_server_failed_once_after_more_than_missed_heartbeats() {
    let own = status(3, 1, 2);
    let mut rig = sampling(3, own);
    // Server 3 answers nothing from here on; server 2 answers every round.
    let mut failed_after = Vec::new();
    for n in 0..(MISSED as u64 + 6) {
        let (out, _) = round(&mut rig, FIRST_ROUND + n * HEARTBEAT, &[2], own);
        // Heartbeats sent to server 3 before this round, all unanswered.
        let missed = n;
        for event in peer_events(&out) {
            assert_eq!(event, (3, false));
            failed_after.push(missed);
        }
        assert!(rig.machine.is_alive(ServerId(2)));
        assert_eq!(
            heart_targets(&out),
            [2, 3],
            "a failed server is still asked"
        );
    }
    assert_eq!(failed_after, [MISSED as u64]);
    assert!(!rig.machine.is_alive(ServerId(3)));
    assert_eq!(rig.machine.alive(), 2);
    assert_eq!(rig.state(), State::Sampling, "two of three is a majority");
}

#[test]
fn sampling_reports_a_server_never_heard_from_failed_too() {
    // Regression: server 3 stopped before its first answer reached this
    // server, so it was never alive here and was never reported failed.
    let own = status(3, 1, 2);
    let mut rig = Rig::new(3, own);
    rig.tick(0);
    rig.status_from(2, own, 5);
    // Server 3 is asked again within the round, and the round decides.
    while rig.state() == State::HashCompare {
        let deadline = rig.machine.next_deadline();
        assert!(deadline <= 5 + HEARTBEAT, "{deadline}");
        rig.tick(deadline);
    }
    assert_eq!(rig.state(), State::Sampling, "two of three");
    assert!(!rig.machine.is_alive(ServerId(3)));
    let mut reported = Vec::new();
    let mut at = rig.machine.next_deadline();
    for _ in 0..(MISSED + 4) {
        let (out, _) = round(&mut rig, at, &[2], own);
        reported.extend(peer_events(&out));
        at += HEARTBEAT;
    }
    assert_eq!(reported, [(3, false)], "reported failed, once");
}

#[test]
fn sampling_reports_a_failed_server_alive_when_it_answers() {
    let own = status(3, 1, 2);
    let mut rig = sampling(3, own);
    let mut at = FIRST_ROUND;
    while rig.machine.is_alive(ServerId(3)) {
        round(&mut rig, at, &[2], own);
        at += HEARTBEAT;
    }
    let (_, answered) = round(&mut rig, at, &[2, 3], own);
    assert_eq!(peer_events(&answered), [(3, true)]);
    assert!(rig.machine.is_alive(ServerId(3)));
    let (ticked, answered) = round(&mut rig, at + HEARTBEAT, &[2, 3], own);
    assert_eq!(peer_events(&ticked), []);
    assert_eq!(peer_events(&answered), [], "reported once");
}

#[test]
fn sampling_keeps_going_while_the_live_servers_are_a_majority() {
    let own = status(3, 1, 2);
    let mut rig = sampling(5, own);
    for n in 0..(MISSED as u64 + 6) {
        let (out, _) = round(&mut rig, FIRST_ROUND + n * HEARTBEAT, &[2, 3], own);
        assert_eq!(lost_majority(&out), [], "round {n}");
    }
    assert_eq!(rig.machine.alive(), 3);
    assert_eq!(rig.state(), State::Sampling);
}

#[test]
fn sampling_reports_lost_majority_when_the_live_servers_fall_below_a_majority() {
    let own = status(3, 1, 2);
    let mut rig = sampling(5, own);
    let mut at = FIRST_ROUND;
    // Servers 4 and 5 go: three of five are left, still a majority.
    while rig.machine.alive() > 3 {
        let (out, _) = round(&mut rig, at, &[2, 3], own);
        assert_eq!(lost_majority(&out), []);
        at += HEARTBEAT;
    }
    // Then server 3 goes too.
    let mut lost = Vec::new();
    while lost.is_empty() {
        let (out, _) = round(&mut rig, at, &[2], own);
        lost = lost_majority(&out);
        if !lost.is_empty() {
            assert_eq!(peer_events(&out), [(3, false)], "in the same round");
        }
        at += HEARTBEAT;
        assert!(at < 100 * HEARTBEAT, "never lost the majority");
    }
    assert_eq!(lost, [(2, 3)]);
    assert_eq!(rig.machine.alive(), 2);
}

#[test]
fn sampling_goes_to_hash_compare_when_out_of_sync() {
    let own = status(3, 1, 2);
    let mut rig = sampling(3, own);
    round(&mut rig, FIRST_ROUND, &[2, 3], own);
    let out = rig.step(Input::OutOfSync, FIRST_ROUND + 300);
    assert_eq!(states(&out), [State::HashCompare]);
    assert_eq!(heart_targets(&out), [2, 3]);
}

#[test]
fn sampling_goes_to_hash_compare_when_a_majority_is_ahead_two_rounds_in_a_row() {
    let own = status(4, 1, 1);
    let ahead = status(5, 2, 2);
    let mut rig = sampling(3, own);
    let (out, _) = round(&mut rig, FIRST_ROUND, &[2, 3], ahead);
    assert_eq!(states(&out), []);
    // First round that sees the majority ahead.
    let (out, _) = round(&mut rig, FIRST_ROUND + HEARTBEAT, &[2, 3], ahead);
    assert_eq!(states(&out), [], "once is not enough");
    // Second in a row.
    let out = rig.tick(FIRST_ROUND + 2 * HEARTBEAT);
    assert_eq!(states(&out), [State::HashCompare]);
}

#[test]
fn sampling_stays_when_a_majority_is_ahead_only_once() {
    let own = status(4, 1, 1);
    let ahead = status(5, 2, 2);
    let further = status(6, 3, 3);
    let mut rig = sampling(3, own);
    round(&mut rig, FIRST_ROUND, &[2, 3], ahead);
    let (out, _) = round(&mut rig, FIRST_ROUND + HEARTBEAT, &[2, 3], ahead);
    assert_eq!(states(&out), [], "ahead once");
    // The ledger commits the same round a moment later: caught up.
    rig.own(ahead, FIRST_ROUND + HEARTBEAT + 500);
    let (out, _) = round(&mut rig, FIRST_ROUND + 2 * HEARTBEAT, &[2, 3], further);
    assert_eq!(states(&out), [], "not ahead");
    // Ahead once more, after a round that was not: still only once.
    let out = rig.tick(FIRST_ROUND + 3 * HEARTBEAT);
    assert_eq!(states(&out), []);
    assert_eq!(rig.state(), State::Sampling);
}

// --- reporting -------------------------------------------------------------

#[test]
fn every_state_change_is_reported_when_it_happens() {
    let own = status(1, 1, 0);
    let theirs = status(2, 2, 2);
    let mut rig = Rig::new(3, own);
    rig.tick(0);
    rig.tick(500);
    rig.status_from(2, theirs, 1_000);
    rig.tick(1_100);
    let out = rig.status_from(3, theirs, 1_200);
    let source = database_requests(&out)[0];
    rig.tick(1_300);
    rig.answer(source, database(theirs.balance_hash, theirs), 1_400);
    rig.own(status(2, 2, 0), 1_500);
    rig.answer(source, Answer::Block(block(1, 2)), 1_600);
    rig.answer(source, Answer::Block(block(2, 2)), 1_601);
    rig.own(status(2, 2, 1), 1_700);
    rig.own(theirs, 1_800);
    rig.tick(1_900);
    rig.status_from(2, theirs, 2_000);
    rig.status_from(3, theirs, 2_100);
    for at in (1..=3).map(|n| 2_100 + n * HEARTBEAT) {
        round(&mut rig, at, &[2, 3], theirs);
    }
    rig.step(Input::OutOfSync, 5_500);
    rig.step(Input::OutOfSync, 5_600);
    rig.status_from(2, theirs, 5_700);
    rig.status_from(3, theirs, 5_800);
    rig.tick(6_000);
    assert_eq!(
        rig.history,
        [
            (0, State::Connecting),
            (1_000, State::HashCompare),
            (1_200, State::FetchSnapshot),
            (1_800, State::HashCompare),
            (2_100, State::Sampling),
            (5_500, State::HashCompare),
            (5_800, State::Sampling),
        ]
    );
}

// --- clocks ----------------------------------------------------------------

/// The clocks a sampling machine of `servers` reports at its next heartbeat
/// round, after its peers answered `(server, offset, round trip)`: each with
/// its clock off this one's by the offset, to a request sent the round trip
/// before the answer came, at FIRST_ROUND + 100.
fn clocks_after(servers: usize, answers: &[(u32, i64, u64)]) -> Clocks {
    let own = status(3, 1, 2);
    let mut rig = Rig::new(servers, own);
    rig.tick(0);
    // Registered, then compared: twice, so that a pair samples too.
    for _ in 0..2 {
        for from in 2..=servers as u32 {
            rig.status_from(from, own, SAMPLING_AT);
        }
    }
    assert_eq!(rig.state(), State::Sampling);
    rig.tick(FIRST_ROUND);
    let now = FIRST_ROUND + 100;
    for &(from, offset, trip) in answers {
        let echo = now - trip;
        let clock = ((echo + trip / 2) as i64 + offset) as u64;
        let answer = Answer::Status {
            status: own,
            clock,
            echo,
            sitting_out: false,
        };
        rig.answer(from, answer, now);
    }
    let out = rig.tick(FIRST_ROUND + HEARTBEAT);
    out.into_iter()
        .find_map(|o| match o {
            Output::Clocks(clocks) => Some(clocks),
            _ => None,
        })
        .expect("a heartbeat round reports the clocks")
}

#[test]
fn each_server_s_offset_is_estimated_from_the_middle_of_its_round_trip() {
    let clocks = clocks_after(3, &[(2, 300, 10), (3, -12, 40)]);
    assert_eq!(clocks.offsets, [None, Some(300), Some(-12)]);
    // One server off is that server's problem: the median is this one's.
    assert_eq!(clocks.skew, 0);
    assert!(!clocks.sitting_out);
}

#[test]
fn a_server_off_the_median_by_more_than_the_tolerance_sits_out() {
    let clocks = clocks_after(3, &[(2, 2_000, 10), (3, 2_100, 10)]);
    assert_eq!(clocks.skew, -2_000, "this server is 2 s behind the median");
    assert!(clocks.sitting_out);
    // Within the tolerance it takes part.
    let clocks = clocks_after(3, &[(2, 400, 10), (3, 450, 10)]);
    assert_eq!(clocks.skew, -400);
    assert!(!clocks.sitting_out);
}

#[test]
fn a_server_that_sits_out_takes_its_slots_again_only_well_within_the_tolerance() {
    let tolerance = TOLERANCE as i64;
    assert!(clock::sits_out(tolerance + 1, TOLERANCE, false));
    assert!(!clock::sits_out(tolerance, TOLERANCE, false));
    // Once out, back in at four fifths of the tolerance, not at its edge.
    assert!(clock::sits_out(tolerance - 1, TOLERANCE, true));
    assert!(clock::sits_out(tolerance * 4 / 5 + 1, TOLERANCE, true));
    assert!(!clock::sits_out(tolerance * 4 / 5, TOLERANCE, true));
}

#[test]
fn two_servers_that_disagree_cannot_tell_who_is_off_and_neither_sits_out() {
    for offset in [2_000, -1_000] {
        let clocks = clocks_after(2, &[(2, offset, 10)]);
        assert_eq!(clocks.offsets, [None, Some(offset)]);
        assert_eq!(clocks.skew, 0);
        assert!(!clocks.sitting_out);
    }
}

#[test]
fn an_answer_whose_round_trip_passed_the_tolerance_is_not_used() {
    // Server 2 answered slowly: its 3 s offset is not taken, and the one
    // measured when sampling began (its clock agreeing) stands.
    let clocks = clocks_after(3, &[(2, 3_000, TOLERANCE + 1), (3, 0, 10)]);
    assert_eq!(clocks.offsets[1], Some(0), "{clocks:?}");
    // A late answer to an older request is paired with that request, by
    // its echo: its round trip is what it was, however many requests went
    // out since.
    let clocks = clocks_after(3, &[(2, 3_000, TOLERANCE), (3, 0, 10)]);
    assert_eq!(clocks.offsets[1], Some(3_000), "{clocks:?}");
}

#[test]
fn one_liar_of_three_cannot_push_an_honest_server_out() {
    // This server and server 3 agree within the tolerance; server 2 lies
    // either way: the median is never the liar's.
    for lie in [-5_000, 5_000] {
        let clocks = clocks_after(3, &[(2, lie, 10), (3, 150, 10)]);
        assert!(!clocks.sitting_out, "{clocks:?}");
        assert!(clocks.skew.abs() <= 150, "{clocks:?}");
    }
}

#[test]
fn another_server_sitting_out_is_reported_when_its_hellos_say_so_and_when_they_stop() {
    let own = status(3, 1, 2);
    let mut rig = sampling(3, own);
    let hello = |sitting_out| Answer::Status {
        status: own,
        clock: 100,
        echo: 100,
        sitting_out,
    };
    let sits = |out: &[Output]| -> Vec<(u32, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Output::SitsOut { id, sitting_out } => Some((id.0, *sitting_out)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(sits(&rig.answer(2, hello(true), 100)), [(2, true)]);
    assert_eq!(
        sits(&rig.answer(2, hello(true), 200)),
        [],
        "once, not each time"
    );
    assert_eq!(sits(&rig.answer(3, hello(false), 210)), [], "never sat out");
    assert_eq!(sits(&rig.answer(2, hello(false), 300)), [(2, false)]);
}

#[test]
fn with_no_fresh_sample_the_verdict_stands() {
    let own = status(3, 1, 2);
    let mut rig = Rig::new(3, own);
    rig.tick(0);
    for from in [2, 3] {
        rig.status_from(from, own, SAMPLING_AT);
    }
    rig.tick(FIRST_ROUND);
    let now = FIRST_ROUND + 10;
    for from in [2, 3] {
        let answer = Answer::Status {
            status: own,
            clock: now + 2_000,
            echo: now,
            sitting_out: false,
        };
        rig.answer(from, answer, now);
    }
    // Then silence: the samples age past two heartbeats, and nothing says
    // this server's clock was fixed.
    let mut last = None;
    for n in 1..=3 {
        for out in rig.tick(FIRST_ROUND + n * HEARTBEAT) {
            if let Output::Clocks(clocks) = out {
                last = Some(clocks);
            }
        }
    }
    let clocks = last.expect("clocks reported");
    assert!(clocks.sitting_out, "{clocks:?}");
}
