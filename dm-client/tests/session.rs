//! Scenario tests of the session engine: hand-built server packages and the
//! recorded aosp-dm11 packets, fed to the engine as a transport would.

use std::time::{Duration, Instant};

use dm_client::account::{provision, AccountSpec};
use dm_client::download::{DownloadError, Fetched, Request};
use dm_client::session::{
    Agent, Begin, ClientSession, Config, Event, Reply, Report, SessionError, Step, Transmit,
    Trigger,
};
use dm_tree::{DmTree, Hooks};
use syncml_core::auth::{basic_cred, challenge, md5_cred, AuthType, HmacHeader, Nonce, UserKey};
use syncml_core::{
    decode, encode, AlertCode, Command, Container, Data, Encoding, Item, ItemCmd, Location,
    MessageBuilder, Meta, StatusCode, SyncMl,
};

const SERVER: &str = "http://dm.test/dm";

fn device(auth: &str, server_auth: Option<(&str, &str)>) -> DmTree {
    let info: Vec<(String, String)> = [
        ("DevId", "IMEI:1"),
        ("Man", "Acme"),
        ("Mod", "X1"),
        ("Lang", "en"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut dm = DmTree::in_memory(&info).unwrap();
    provision(
        &mut dm,
        &AccountSpec {
            name: "srv".into(),
            server_id: "srv".into(),
            addr: SERVER.into(),
            auth_type: auth.into(),
            user: "dev".into(),
            password: "devpw".into(),
            server_auth: server_auth.map(|(a, b)| (a.to_owned(), b.to_owned())),
        },
    )
    .unwrap();
    dm
}

fn start(dm: &DmTree, cfg: Config, reports: Vec<Report>) -> (ClientSession, Transmit) {
    let (s, step) = ClientSession::start(
        dm,
        cfg,
        "srv",
        Trigger::Client {
            session_id: "7".into(),
        },
        reports,
        Instant::now(),
    )
    .unwrap();
    (s, sent(step))
}

fn sent(step: Step) -> Transmit {
    match step {
        Step::Send(t) => t,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn done(step: Step) -> Result<(), SessionError> {
    match step {
        Step::Done(o) => o.result,
        other => panic!("expected the end, got {other:?}"),
    }
}

fn msg(t: &Transmit) -> SyncMl {
    decode(&t.body).unwrap()
}

/// The server's reply to a device message, its header accepted with `code`.
fn reply_to(dev: &SyncMl, msg_id: u32, code: StatusCode) -> MessageBuilder {
    let mut b = MessageBuilder::reply_to(&dev.hdr, msg_id);
    b.status_for_header(code);
    b
}

fn deliver(
    s: &mut ClientSession,
    dm: &mut DmTree,
    agent: &mut dyn Agent,
    m: &SyncMl,
    enc: Encoding,
) -> Step {
    let body = encode(m, enc).unwrap();
    s.receive(
        dm,
        agent,
        Reply {
            status: 200,
            content_type: Some(enc.media_type().into()),
            hmac: None,
            body,
        },
        Instant::now(),
    )
}

/// `deliver` in XML to a device without user or firmware agent.
fn headless(s: &mut ClientSession, dm: &mut DmTree, m: &SyncMl) -> Step {
    deliver(s, dm, &mut dm_tree::Headless, m, Encoding::Xml)
}

fn statuses(m: &SyncMl) -> Vec<(String, u16)> {
    m.body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) => Some((s.cmd.clone(), s.data.code())),
            _ => None,
        })
        .collect()
}

fn value(dm: &DmTree, path: &str) -> Option<String> {
    dm.tree
        .get(path)
        .and_then(|n| n.value().map(|v| String::from_utf8_lossy(v).into_owned()))
}

#[test]
fn package_1_then_commands_then_the_end() {
    let mut dm = device("BASIC", None);
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    assert_eq!(t.url, SERVER);
    assert_eq!(t.content_type, "application/vnd.syncml.dm+xml");
    let p1 = msg(&t);
    assert_eq!(p1.hdr.session_id, "7");
    assert_eq!(p1.hdr.msg_id, 1);
    assert_eq!(p1.hdr.source.loc_uri, "IMEI:1");
    assert_eq!(p1.hdr.cred, Some(basic_cred("dev", "devpw")));
    assert_eq!(p1.hdr.meta.as_ref().unwrap().max_msg_size, Some(65536));
    assert!(p1.body.is_final);
    let Command::Alert(a) = &p1.body.commands[0] else {
        panic!()
    };
    assert_eq!(a.data, Some(AlertCode::ClientInitiated));
    let Command::Replace(r) = &p1.body.commands[1] else {
        panic!()
    };
    let devinfo: Vec<_> = r
        .items
        .iter()
        .map(|i| {
            (
                i.source.as_ref().unwrap().loc_uri.as_str(),
                i.data_str().unwrap(),
            )
        })
        .collect();
    assert!(devinfo.contains(&("./DevInfo/Mod", "X1")), "{devinfo:?}");
    assert!(devinfo.contains(&("./DevInfo/DevId", "IMEI:1")));

    // Package 2: a Get and a Replace.
    let mut b = reply_to(&p1, 1, StatusCode::AuthenticationAccepted);
    for c in &p1.body.commands {
        b.status_for(c, StatusCode::Ok);
    }
    b.get(vec![Item::target("./DevInfo/Man")]);
    b.replace(vec![Item::target("./DMAcc/srv/Name").with_data("fr")]);
    let p2 = b.finish();
    let t3 = sent(headless(&mut s, &mut dm, &p2));
    let p3 = msg(&t3);
    assert_eq!(p3.hdr.msg_id, 2);
    assert!(p3.hdr.cred.is_none(), "no credentials after 212");
    assert_eq!(
        statuses(&p3),
        [
            ("SyncHdr".into(), 200),
            ("Get".into(), 200),
            ("Replace".into(), 200)
        ]
    );
    let Command::Results(res) = &p3.body.commands[2] else {
        panic!("{:?}", p3.body.commands)
    };
    assert_eq!(res.items[0].data_str(), Some("Acme"));
    assert!(p3.body.is_final);
    assert_eq!(value(&dm, "./DMAcc/srv/Name").as_deref(), Some("fr"));
    assert!(s.take_events().contains(&Event::Authenticated));

    // Package 4: only statuses: the session is over.
    let mut b = reply_to(&p3, 2, StatusCode::Ok);
    b.status_for(&p3.body.commands[2], StatusCode::Ok);
    assert_eq!(done(headless(&mut s, &mut dm, &b.finish())), Ok(()));
}

#[test]
fn answers_in_the_servers_encoding_and_follows_resp_uri() {
    let mut dm = device("BASIC", None);
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let p1 = msg(&t);
    let mut b = reply_to(&p1, 1, StatusCode::AuthenticationAccepted);
    b.resp_uri("http://node2.dm.test/dm?s=7");
    b.get(vec![Item::target("./DevInfo/Mod")]);
    let t3 = sent(deliver(
        &mut s,
        &mut dm,
        &mut dm_tree::Headless,
        &b.finish(),
        Encoding::Wbxml,
    ));
    assert_eq!(t3.content_type, "application/vnd.syncml.dm+wbxml");
    assert_eq!(Encoding::detect(&t3.body).unwrap(), Encoding::Wbxml);
    assert_eq!(t3.url, "http://node2.dm.test/dm?s=7");
    // The header Target stays the server's URI.
    assert_eq!(msg(&t3).hdr.target.loc_uri, SERVER);
}

#[test]
fn md5_challenge_resends_package_1_and_keeps_the_next_nonce() {
    let mut dm = device("DIGEST", None);
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let p1 = msg(&t);
    let key = UserKey::new("dev", "devpw");
    // Refused, with a challenge to MD5 and a nonce.
    let mut b = MessageBuilder::reply_to(&p1.hdr, 1);
    b.status_for_header_with(
        StatusCode::InvalidCredentials,
        Some(challenge(AuthType::Md5, &Nonce::from_bytes(*b"first"))),
    );
    let again = msg(&sent(headless(&mut s, &mut dm, &b.finish())));
    assert_eq!(again.hdr.msg_id, 2);
    assert_eq!(
        again.hdr.cred,
        Some(md5_cred(&key, &Nonce::from_bytes(*b"first")))
    );
    assert_eq!(again.hdr.source.loc_name.as_deref(), Some("dev"));
    // Package 1 again, after the Status of the challenging header (protocol 2.4.1).
    assert_eq!(statuses(&again)[0], ("SyncHdr".into(), 200));
    let Command::Status(h) = &again.body.commands[0] else {
        panic!()
    };
    assert_eq!(h.msg_ref, Some(1));
    let names = |cmds: &[Command]| cmds.iter().map(|c| c.name().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&again.body.commands[1..]), names(&p1.body.commands));
    // Accepted, with the nonce for the next session.
    let mut b = MessageBuilder::reply_to(&again.hdr, 2);
    b.status_for_header_with(
        StatusCode::AuthenticationAccepted,
        Some(challenge(AuthType::Md5, &Nonce::from_bytes(*b"next"))),
    );
    assert_eq!(done(headless(&mut s, &mut dm, &b.finish())), Ok(()));
    assert_eq!(
        value(&dm, "./DMAcc/srv/AppAuth/1/AAuthData").as_deref(),
        Some("next")
    );
}

#[test]
fn hmac_goes_in_the_transport_header_of_every_message() {
    let mut dm = device("HMAC", None);
    dm.set("./DMAcc/srv/AppAuth/1/AAuthData", b"n0").unwrap();
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let key = UserKey::new("dev", "devpw");
    let h = HmacHeader::parse(t.hmac.as_deref().expect("an HMAC header")).unwrap();
    h.verify(&key, &Nonce::from_bytes(*b"n0"), &t.body).unwrap();
    assert!(msg(&t).hdr.cred.is_none());
    let p1 = msg(&t);
    let mut b = MessageBuilder::reply_to(&p1.hdr, 1);
    b.status_for_header_with(
        StatusCode::Ok,
        Some(challenge(AuthType::Hmac, &Nonce::from_bytes(*b"n1"))),
    );
    b.get(vec![Item::target("./DevInfo/Mod")]);
    let t3 = sent(headless(&mut s, &mut dm, &b.finish()));
    let h = HmacHeader::parse(t3.hmac.as_deref().unwrap()).unwrap();
    h.verify(&key, &Nonce::from_bytes(*b"n1"), &t3.body)
        .expect("the next message uses the new nonce");
}

#[test]
fn an_unauthenticated_server_gets_nothing_executed() {
    let mut dm = device("BASIC", Some(("srvname", "srvpw")));
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let p1 = msg(&t);
    let mut b = reply_to(&p1, 1, StatusCode::AuthenticationAccepted);
    b.replace(vec![Item::target("./DMAcc/srv/Name").with_data("xx")]);
    let p3 = msg(&sent(headless(&mut s, &mut dm, &b.finish())));
    assert_eq!(
        statuses(&p3),
        [("SyncHdr".into(), 407), ("Replace".into(), 407)]
    );
    let Command::Status(h) = &p3.body.commands[0] else {
        panic!()
    };
    assert!(h.chal.is_some(), "407 carries a challenge");
    assert_eq!(
        value(&dm, "./DMAcc/srv/Name").as_deref(),
        Some("srv"),
        "nothing executed"
    );
    assert!(s
        .take_events()
        .contains(&Event::ServerRefused(StatusCode::MissingCredentials)));

    // With the right credentials the same command runs, and the device says 212.
    let mut b = reply_to(&p3, 2, StatusCode::Ok);
    b.cred(basic_cred("srvname", "srvpw"));
    b.replace(vec![Item::target("./DMAcc/srv/Name").with_data("xx")]);
    let p5 = msg(&sent(headless(&mut s, &mut dm, &b.finish())));
    assert_eq!(
        statuses(&p5),
        [("SyncHdr".into(), 212), ("Replace".into(), 200)]
    );
    assert_eq!(value(&dm, "./DMAcc/srv/Name").as_deref(), Some("xx"));
}

#[test]
fn a_server_with_wrong_credentials_is_refused_every_time() {
    let mut dm = device("BASIC", Some(("srvname", "srvpw")));
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let mut last = msg(&t);
    for i in 1..=5 {
        let mut b = reply_to(&last, i, StatusCode::Ok);
        b.cred(basic_cred("srvname", "wrong"));
        b.replace(vec![Item::target("./DMAcc/srv/Name").with_data("xx")]);
        match headless(&mut s, &mut dm, &b.finish()) {
            Step::Send(t) => {
                last = msg(&t);
                assert_eq!(statuses(&last)[0], ("SyncHdr".into(), 401));
            }
            Step::Done(o) => {
                assert_eq!(o.result, Err(SessionError::ServerAuth));
                assert_eq!(value(&dm, "./DMAcc/srv/Name").as_deref(), Some("srv"));
                return;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("the device never gave up");
}

#[test]
fn a_large_object_from_the_server_is_answered_213_and_1222() {
    let mut dm = device("BASIC", None);
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let mut last = msg(&t);
    let value_full = "x".repeat(300);
    let chunks = [
        &value_full[..100],
        &value_full[100..200],
        &value_full[200..],
    ];
    for (i, chunk) in chunks.iter().enumerate() {
        let mut b = reply_to(&last, i as u32 + 1, StatusCode::AuthenticationAccepted);
        let mut it = Item::target("./DMAcc/srv/Name").with_data(*chunk);
        it.meta = Some(Box::new(Meta {
            size: (i == 0).then_some(300),
            format: Some("chr".into()),
            ..Meta::default()
        }));
        it.more_data = i < 2;
        b.replace(vec![it]);
        if i < 2 {
            b.more_messages();
        }
        let t = sent(headless(&mut s, &mut dm, &b.finish()));
        last = msg(&t);
        if i < 2 {
            assert_eq!(statuses(&last)[1], ("Replace".into(), 213));
            assert!(
                matches!(last.body.commands.last(), Some(Command::Alert(a)) if a.data == Some(AlertCode::NextMessage))
            );
            assert!(
                !last.body.is_final,
                "the device's package stays open while the server's is"
            );
        } else {
            assert_eq!(statuses(&last)[1], ("Replace".into(), 200));
            assert!(last.body.is_final);
        }
    }
    assert_eq!(
        value(&dm, "./DMAcc/srv/Name").as_deref(),
        Some(value_full.as_str())
    );
}

#[test]
fn large_results_go_in_chunks_within_the_servers_max_msg_size() {
    let mut dm = device("BASIC", None);
    let big: String = (0..6000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    dm.set("./DevDetail/Ext/Big", big.as_bytes()).unwrap();
    dm.tree.commit().unwrap();
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let p1 = msg(&t);
    let mut b = reply_to(&p1, 1, StatusCode::AuthenticationAccepted);
    b.max_msg_size(1500);
    b.get(vec![Item::target("./DevDetail/Ext/Big")]);
    let mut t = sent(headless(&mut s, &mut dm, &b.finish()));
    let mut got = String::new();
    let mut server_id = 2;
    loop {
        assert!(t.body.len() <= 1500, "message of {} bytes", t.body.len());
        let m = msg(&t);
        for c in &m.body.commands {
            if let Command::Results(r) = c {
                got.push_str(r.items[0].data_str().unwrap());
                assert_eq!(r.items[0].more_data, !m.body.is_final);
            }
        }
        if m.body.is_final {
            break;
        }
        // The server's "next message" request: Status for the header, Alert 1222.
        let mut b = reply_to(&m, server_id, StatusCode::Ok);
        b.alert_code(AlertCode::NextMessage);
        b.more_messages();
        server_id += 1;
        t = sent(headless(&mut s, &mut dm, &b.finish()));
        let n = msg(&t);
        assert!(
            !n.body
                .commands
                .iter()
                .any(|c| matches!(c, Command::Alert(a) if a.data == Some(AlertCode::NextMessage))),
            "the device sends the rest, not a 1222 of its own"
        );
    }
    assert_eq!(got, big);
    assert!(server_id > 4, "several messages");
}

#[test]
fn the_server_can_abort_and_so_can_the_device() {
    let mut dm = device("BASIC", None);
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let p1 = msg(&t);
    let mut b = reply_to(&p1, 1, StatusCode::Ok);
    b.alert_code(AlertCode::SessionAbort);
    assert_eq!(
        done(headless(&mut s, &mut dm, &b.finish())),
        Err(SessionError::Aborted)
    );

    let (mut s, _) = start(&dm, Config::default(), Vec::new());
    let t = sent(s.abort(Instant::now()));
    let m = msg(&t);
    assert!(
        matches!(&m.body.commands[0], Command::Alert(a) if a.data == Some(AlertCode::SessionAbort))
    );
    let b = reply_to(&m, 1, StatusCode::Ok);
    assert_eq!(
        done(headless(&mut s, &mut dm, &b.clone().finish())),
        Err(SessionError::Cancelled)
    );
}

#[test]
fn a_replayed_message_or_a_foreign_session_ends_the_session() {
    let mut dm = device("BASIC", None);
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let p1 = msg(&t);
    let mut b = reply_to(&p1, 1, StatusCode::Ok);
    b.get(vec![Item::target("./DevInfo/Mod")]);
    let p2 = b.finish();
    let _ = sent(headless(&mut s, &mut dm, &p2));
    assert!(matches!(
        done(headless(&mut s, &mut dm, &p2)),
        Err(SessionError::Protocol(_))
    ));

    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let mut p2 = reply_to(&msg(&t), 1, StatusCode::Ok).finish();
    p2.hdr.session_id = "8".into();
    assert!(matches!(
        done(headless(&mut s, &mut dm, &p2)),
        Err(SessionError::Protocol(_))
    ));
}

#[test]
fn a_late_reply_times_out_and_http_errors_end_the_session() {
    let dm = device("BASIC", None);
    let (mut s, t) = start(
        &dm,
        Config {
            response_timeout: Duration::from_secs(5),
            ..Config::default()
        },
        Vec::new(),
    );
    assert!(s.timeout(t.deadline - Duration::from_secs(1)).is_none());
    assert_eq!(
        done(s.timeout(t.deadline).unwrap()),
        Err(SessionError::Timeout)
    );

    let mut dm = device("BASIC", None);
    let (mut s, _) = start(&dm, Config::default(), Vec::new());
    let r = Reply {
        status: 500,
        ..Reply::default()
    };
    assert_eq!(
        done(s.receive(&mut dm, &mut dm_tree::Headless, r, Instant::now())),
        Err(SessionError::Http(500))
    );
}

#[test]
fn server_initiated_session_uses_alert_1200_and_the_notification_id() {
    let dm = device("BASIC", None);
    let (_, step) = ClientSession::start(
        &dm,
        Config {
            encoding: Encoding::Wbxml,
            ..Config::default()
        },
        "srv",
        Trigger::Server { session_id: 0x00A1 },
        Vec::new(),
        Instant::now(),
    )
    .unwrap();
    let t = sent(step);
    assert_eq!(t.content_type, "application/vnd.syncml.dm+wbxml");
    let m = msg(&t);
    assert_eq!(m.hdr.session_id, "A1");
    assert!(
        matches!(&m.body.commands[0], Command::Alert(a) if a.data == Some(AlertCode::ServerInitiated))
    );
}

/// A device that downloads: records what it was asked and answers from a script.
#[derive(Default)]
struct Fetcher {
    asked: Vec<String>,
    answered: Vec<(String, String)>,
}

impl Hooks for Fetcher {}

impl Agent for Fetcher {
    fn begin_download(&mut self, _dm: &mut DmTree, _sid: &str, cmd: &Command) -> Begin {
        let url = cmd.items()[0].arg("DL_URL").unwrap_or_default().to_owned();
        if url.contains("stored") {
            return Begin::Answer(StatusCode::Ok);
        }
        self.asked.push(url.clone());
        Begin::Fetch(Request {
            url,
            dest: "/nonexistent/pkg".into(),
            max_size: 1 << 20,
            timeout: Duration::from_secs(5),
        })
    }

    fn end_download(
        &mut self,
        _dm: &mut DmTree,
        _sid: &str,
        _cmd: &Command,
        result: Result<Fetched, DownloadError>,
    ) -> StatusCode {
        match result {
            Ok(_) => StatusCode::Ok,
            Err(_) => StatusCode::CommandFailed,
        }
    }

    fn report_answered(&mut self, _dm: &mut DmTree, id: &str, code: StatusCode) {
        self.answered.push((id.to_owned(), code.to_string()));
    }
}

fn gfu(url: &str) -> Command {
    Command::GetFirmwareUpdate(ItemCmd::new(vec![Item {
        target: Some(Location::new("./FWUpdate/1/PkgData")),
        source: Some(Location::new(url)),
        data: vec![
            Data::text(format!("DL_URL={url}")),
            Data::text("DL_Prompt=0"),
        ],
        ..Item::default()
    }]))
}

#[test]
fn a_download_pauses_the_message_and_the_rest_runs_after_it() {
    let mut dm = device("BASIC", None);
    let mut agent = Fetcher::default();
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let p1 = msg(&t);
    let mut b = reply_to(&p1, 1, StatusCode::AuthenticationAccepted);
    b.command(gfu("http://pkg.test/a"));
    b.command(Command::Sequence(Container {
        commands: vec![
            gfu("http://pkg.test/b"),
            Command::Replace(ItemCmd::new(vec![
                Item::target("./DMAcc/srv/Name").with_data("de")
            ])),
        ],
        ..Container::default()
    }));
    b.command(Command::Sequence(Container {
        commands: vec![
            gfu("http://pkg.test/c"),
            Command::Replace(ItemCmd::new(vec![
                Item::target("./DMAcc/srv/Name").with_data("it")
            ])),
        ],
        ..Container::default()
    }));
    b.command(gfu("http://pkg.test/stored"));
    let p2 = b.finish();
    let step = deliver(&mut s, &mut dm, &mut agent, &p2, Encoding::Xml);
    let Step::Download(req) = step else {
        panic!("{step:?}")
    };
    assert_eq!(req.url, "http://pkg.test/a");
    let ok = || {
        Ok(Fetched {
            url: String::new(),
            len: 1,
            content_type: None,
            resumed: false,
        })
    };
    let step = s.download_done(&mut dm, &mut agent, ok(), Instant::now());
    let Step::Download(req) = step else {
        panic!("{step:?}")
    };
    assert_eq!(req.url, "http://pkg.test/b");
    let step = s.download_done(&mut dm, &mut agent, ok(), Instant::now());
    let Step::Download(req) = step else {
        panic!("{step:?}")
    };
    assert_eq!(req.url, "http://pkg.test/c");
    let step = s.download_done(
        &mut dm,
        &mut agent,
        Err(DownloadError::Timeout),
        Instant::now(),
    );
    let p3 = msg(&sent(step));
    assert_eq!(
        statuses(&p3),
        [
            ("SyncHdr".into(), 200),
            ("GetFirmwareUpdate".into(), 200),
            ("Sequence".into(), 200),
            ("GetFirmwareUpdate".into(), 200),
            ("Replace".into(), 200),
            ("Sequence".into(), 200),
            ("GetFirmwareUpdate".into(), 500),
            ("Replace".into(), 215),
            ("GetFirmwareUpdate".into(), 200),
        ]
    );
    assert_eq!(
        value(&dm, "./DMAcc/srv/Name").as_deref(),
        Some("de"),
        "the failed Sequence stopped"
    );
}

#[test]
fn reports_ride_in_package_1_and_their_answers_reach_the_agent() {
    let mut dm = device("BASIC", None);
    let mut agent = Fetcher::default();
    let mut alert = syncml_core::Alert {
        cmd_id: 0,
        no_resp: false,
        cred: None,
        data: Some(AlertCode::GenericAlert),
        correlator: Some("corr-1".into()),
        items: vec![Item::source("./FUMO/1").with_data("200")],
        extra: Vec::new(),
    };
    alert.items[0].meta = Some(Box::new(Meta::format_type(
        Some("int"),
        Some("org.openmobilealliance.dm.firmwareupdate.download"),
    )));
    let confirm = Command::ConfirmFirmwareUpdate(ItemCmd::new(vec![
        Item::source("./FWUpdate/1").with_data("200")
    ]));
    let reports = vec![
        Report {
            id: "fumo".into(),
            command: Command::Alert(alert),
        },
        Report {
            id: "confirm".into(),
            command: confirm,
        },
    ];
    let (mut s, t) = start(&dm, Config::default(), reports);
    let p1 = msg(&t);
    assert_eq!(p1.body.commands.len(), 4);
    assert_eq!(p1.body.commands[3].name(), "ConfirmFirmwareUpdate");
    let mut b = reply_to(&p1, 1, StatusCode::AuthenticationAccepted);
    b.status_for(&p1.body.commands[2], StatusCode::Ok);
    b.status_for(&p1.body.commands[3], StatusCode::CommandFailed);
    assert_eq!(
        done(deliver(
            &mut s,
            &mut dm,
            &mut agent,
            &b.finish(),
            Encoding::Xml
        )),
        Ok(())
    );
    assert_eq!(
        agent.answered,
        [
            ("fumo".into(), "200".into()),
            ("confirm".into(), "500".into())
        ]
    );
}

#[test]
fn a_client_command_from_the_server_is_refused() {
    let mut dm = device("BASIC", None);
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let p1 = msg(&t);
    let mut b = reply_to(&p1, 1, StatusCode::Ok);
    b.command(Command::ConfirmFirmwareUpdate(ItemCmd::new(vec![
        Item::source("./FWUpdate/1").with_data("200"),
    ])));
    b.command(Command::SimCardChange(ItemCmd::new(vec![Item::source(
        "./SIM/ICCID",
    )
    .with_data("1")])));
    let p3 = msg(&sent(headless(&mut s, &mut dm, &b.finish())));
    assert_eq!(
        statuses(&p3)[1..],
        [
            ("ConfirmFirmwareUpdate".into(), 405),
            ("SIMCardChange".into(), 405)
        ]
    );
}

// ---- recorded server packets (aosp-dm11) -----------------------------------------

fn vector(name: &str) -> Vec<u8> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/aosp-dm11");
    let dir = if dir.exists() {
        dir
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/aosp-dm11")
    };
    std::fs::read(dir.join(name)).unwrap()
}

/// A DM 1.1.2 device with the account the recorded server (`Scts`) expects.
fn v11_device(server_pw: &str) -> DmTree {
    let info: Vec<(String, String)> =
        [("DevId", "000000011234564"), ("Man", "Acme"), ("Mod", "X1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let mut dm = DmTree::in_memory(&info).unwrap();
    for (leaf, v) in [
        ("ServerId", "Scts"),
        ("Addr", "http://10.72.34.217:80/Manage"),
        ("AuthPref", "syncml:auth-basic"),
        ("UserName", "dev"),
        ("ClientPW", "devpw"),
        ("ServerPW", server_pw),
    ] {
        dm.tree.ensure_interior("./SyncML/DMAcc/scts").unwrap();
        dm.set(&format!("./SyncML/DMAcc/scts/{leaf}"), v.as_bytes())
            .unwrap();
    }
    dm.tree.commit().unwrap();
    dm
}

/// Feeds a recorded server packet to a session opened with its SessionID.
fn replay(name: &str, server_pw: &str) -> (Step, DmTree) {
    let mut dm = v11_device(server_pw);
    let body = vector(name);
    let session = decode(&body).unwrap().hdr.session_id;
    let (mut s, _) = ClientSession::start(
        &dm,
        Config::default(),
        "Scts",
        Trigger::Client {
            session_id: session,
        },
        Vec::new(),
        Instant::now(),
    )
    .unwrap();
    let ct = if name.ends_with(".wbxml") {
        "application/vnd.syncml+wbxml"
    } else {
        "application/vnd.syncml+xml"
    };
    let step = s.receive(
        &mut dm,
        &mut dm_tree::Headless,
        Reply {
            status: 200,
            content_type: Some(ct.into()),
            hmac: None,
            body,
        },
        Instant::now(),
    );
    (step, dm)
}

#[test]
fn recorded_wbxml_get_with_server_basic_credentials() {
    let (step, _) = replay("testget.wbxml", "SampleClient");
    let t = sent(step);
    assert_eq!(
        t.url, "http://10.72.34.217/Scts?0JTIAA==",
        "RespURI with its query"
    );
    assert_eq!(t.content_type, "application/vnd.syncml.dm+wbxml");
    let m = msg(&t);
    assert_eq!(m.hdr.ver_dtd, "1.1");
    let st = statuses(&m);
    assert_eq!(
        st[0],
        ("SyncHdr".into(), 212),
        "the server's Basic credentials were accepted"
    );
    assert!(st.iter().any(|(c, _)| c == "Get"), "{st:?}");
}

#[test]
fn recorded_packets_from_a_server_with_wrong_credentials_run_nothing() {
    let (step, dm) = replay("testreplace.wbxml", "not-the-password");
    let before = v11_device("x");
    let m = msg(&sent(step));
    assert_eq!(statuses(&m)[0], ("SyncHdr".into(), 401));
    assert!(statuses(&m)[1..].iter().all(|(_, c)| *c == 401));
    assert_eq!(value(&dm, "./DevInfo/Mod"), value(&before, "./DevInfo/Mod"));
}

#[test]
fn recorded_ui_alerts_are_answered() {
    // The confirmation offers `MAXDT=15&DR=1` with a raw `&`: the default is "yes".
    for (name, code) in [("testalertdisplay.xml", 200), ("testalertconfirm.xml", 200)] {
        let (step, _) = replay(name, "");
        let m = msg(&sent(step));
        let st = statuses(&m);
        assert_eq!(st[1].0, "Alert", "{name}");
        assert_eq!(st[1].1, code, "{name}");
    }
}

#[test]
fn credentials_count_against_the_servers_max_msg_size() {
    for auth in ["BASIC", "DIGEST"] {
        let mut dm = device(auth, None);
        let big: String = (0..6000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        dm.set("./DevDetail/Ext/Big", big.as_bytes()).unwrap();
        dm.tree.commit().unwrap();
        let (mut s, t) = start(&dm, Config::default(), Vec::new());
        let p1 = msg(&t);
        // 200, not 212: the device keeps sending credentials in every message.
        let mut b = MessageBuilder::reply_to(&p1.hdr, 1);
        let chal = (auth == "DIGEST").then(|| challenge(AuthType::Md5, &Nonce::from_bytes(*b"n")));
        b.status_for_header_with(StatusCode::Ok, chal);
        b.max_msg_size(1500);
        b.get(vec![Item::target("./DevDetail/Ext/Big")]);
        b.more_messages();
        let mut t = sent(headless(&mut s, &mut dm, &b.finish()));
        for i in 2..20 {
            let m = msg(&t);
            assert!(m.hdr.cred.is_some(), "{auth}: credentials until 212");
            assert!(
                t.body.len() <= 1500,
                "{auth}: message of {} bytes",
                t.body.len()
            );
            if m.body.is_final {
                break;
            }
            let mut b = reply_to(&m, i, StatusCode::Ok);
            b.alert_code(AlertCode::NextMessage);
            b.more_messages();
            t = sent(headless(&mut s, &mut dm, &b.finish()));
        }
    }
}

#[test]
fn a_bare_unauthenticated_reply_ends_the_session_and_keeps_the_nonce() {
    let mut dm = device("DIGEST", Some(("srvname", "srvpw")));
    let before = value(&dm, "./DMAcc/srv/AppAuth/2/AAuthData");
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    // Only a header Status, no server credentials: nothing to refuse, so no bare
    // challenge goes back (protocol 2.4) and no nonce is issued.
    let mut b = reply_to(&msg(&t), 1, StatusCode::AuthenticationAccepted);
    let step = headless(&mut s, &mut dm, &b.finish());
    assert_eq!(done(step), Err(SessionError::ServerAuth));
    assert_eq!(value(&dm, "./DMAcc/srv/AppAuth/2/AAuthData"), before);
}

#[test]
fn the_nonce_issued_to_the_server_is_kept_when_it_is_sent() {
    let mut dm = device("DIGEST", Some(("srvname", "srvpw")));
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    s.set_nonce_source(Box::new(Fixed(*b"0123456789abcdef")));
    let mut b = reply_to(&msg(&t), 1, StatusCode::AuthenticationAccepted);
    // MD5 over the nonce the device holds for the server (none yet: empty).
    b.cred(md5_cred(
        &UserKey::new("srvname", "srvpw"),
        &Nonce::from_bytes(Vec::new()),
    ));
    b.source_name("srvname");
    b.get(vec![Item::target("./DevInfo/Mod")]);
    let p3 = msg(&sent(headless(&mut s, &mut dm, &b.finish())));
    let Command::Status(h) = &p3.body.commands[0] else {
        panic!()
    };
    assert_eq!(h.data, StatusCode::AuthenticationAccepted);
    let sent_nonce = h
        .chal
        .as_ref()
        .and_then(|c| c.meta.next_nonce.clone())
        .expect("a challenge with the next nonce");
    assert_eq!(
        Nonce::from_b64(&sent_nonce).unwrap().as_bytes(),
        b"0123456789abcdef"
    );
    assert_eq!(
        value(&dm, "./DMAcc/srv/AppAuth/2/AAuthData").as_deref(),
        Some("0123456789abcdef")
    );
}

struct Fixed([u8; 16]);

impl syncml_core::auth::NonceSource for Fixed {
    fn fill(&mut self, buf: &mut [u8]) -> syncml_core::Result<()> {
        for (d, s) in buf.iter_mut().zip(self.0.iter().cycle()) {
            *d = *s;
        }
        Ok(())
    }
}

#[test]
fn an_auth_type_the_engine_does_not_speak_sends_no_password() {
    let dm = device("X509", None);
    let r = ClientSession::start(
        &dm,
        Config::default(),
        "srv",
        Trigger::Client {
            session_id: "1".into(),
        },
        Vec::new(),
        Instant::now(),
    );
    assert!(
        matches!(r, Err(SessionError::ClientAuth(_))),
        "{:?}",
        r.err()
    );
}

#[test]
fn refused_commands_inside_containers_get_a_status_each() {
    let mut dm = device("BASIC", Some(("srvname", "srvpw")));
    let (mut s, t) = start(&dm, Config::default(), Vec::new());
    let mut b = reply_to(&msg(&t), 1, StatusCode::AuthenticationAccepted);
    b.command(Command::Atomic(Container {
        commands: vec![Command::Replace(ItemCmd::new(vec![Item::target(
            "./DMAcc/srv/Name",
        )
        .with_data("x")]))],
        ..Container::default()
    }));
    let p3 = msg(&sent(headless(&mut s, &mut dm, &b.finish())));
    assert_eq!(
        statuses(&p3),
        [
            ("SyncHdr".into(), 407),
            ("Atomic".into(), 407),
            ("Replace".into(), 407)
        ]
    );
}

/// Every command of every recorded packet gets its Status (nested ones included),
/// the header Status first, whatever the server's credentials make of it.
#[test]
fn every_recorded_packet_is_answered_command_by_command() {
    fn count(cmds: &[Command]) -> usize {
        cmds.iter()
            .map(|c| match c {
                Command::Status(_) | Command::Results(_) => 0,
                Command::Atomic(x) | Command::Sequence(x) => 1 + count(&x.commands),
                _ => 1,
            })
            .sum()
    }
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/aosp-dm11");
    let dir = if dir.exists() {
        dir
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/aosp-dm11")
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !(name.ends_with(".xml") || name.ends_with(".wbxml")) {
            continue;
        }
        seen += 1;
        let packet = decode(&vector(&name)).unwrap();
        let (step, _) = replay(&name, "SampleClient");
        let m = msg(&sent(step));
        let st = statuses(&m);
        assert_eq!(st[0].0, "SyncHdr", "{name}");
        assert_eq!(st.len() - 1, count(&packet.body.commands), "{name}: {st:?}");
        let Command::Status(h) = &m.body.commands[0] else {
            panic!()
        };
        assert_eq!(h.msg_ref, Some(packet.hdr.msg_id), "{name}");
    }
    assert!(seen >= 12, "only {seen} packets found in {}", dir.display());
}
