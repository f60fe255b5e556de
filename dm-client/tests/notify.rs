//! Package #0 verification against a real tree, the UDP listener on loopback and the
//! HTTP long-poll against a tiny HTTP responder.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use dm_client::notify::{verify, Notice, NotifyError, ReplayFilter, UdpListener};
use dm_tree::{Format, Record, Tree};
use syncml_core::auth::{Nonce, UserKey};
use syncml_core::notify::{Initiator, Notification, UiMode, RESET_NONCE};
use syncml_core::NotificationProblem;

const SERVER: &str = "acme-dm";
const SERVER_PW: &str = "srv-secret";
const STORED_NONCE: &[u8] = &[0x10, 0x00, 0xFF, 0x42];

fn leaf(t: &mut Tree, path: &str, format: Format, v: &[u8]) {
    t.put(path, Record::leaf(format, v)).unwrap();
}

/// A DM 1.2 account whose SRVCRED name is `srv_name` (none when empty).
fn account_12(t: &mut Tree, node: &str, server_id: &str, srv_name: &str, secret: &[u8]) {
    let a = format!("./DMAcc/{node}");
    leaf(
        t,
        &format!("{a}/ServerID"),
        Format::Chr,
        server_id.as_bytes(),
    );
    leaf(
        t,
        &format!("{a}/AppAuth/s/AAuthLevel"),
        Format::Chr,
        b"SRVCRED",
    );
    leaf(
        t,
        &format!("{a}/AppAuth/s/AAuthType"),
        Format::Chr,
        b"DIGEST",
    );
    if !srv_name.is_empty() {
        leaf(
            t,
            &format!("{a}/AppAuth/s/AAuthName"),
            Format::Chr,
            srv_name.as_bytes(),
        );
    }
    leaf(
        t,
        &format!("{a}/AppAuth/s/AAuthSecret"),
        Format::Chr,
        secret,
    );
    leaf(
        t,
        &format!("{a}/AppAuth/s/AAuthData"),
        Format::Bin,
        STORED_NONCE,
    );
}

fn tree() -> Tree {
    let mut t = Tree::new();
    account_12(&mut t, "acme", SERVER, SERVER, SERVER_PW.as_bytes());
    t
}

fn signed(n: &Notification, name: &str, password: &str, nonce: &[u8]) -> Vec<u8> {
    n.build(&UserKey::new(name, password), &Nonce::from_bytes(nonce))
        .unwrap()
}

fn package(session_id: u16) -> Vec<u8> {
    signed(
        &Notification::new(SERVER, session_id),
        SERVER,
        SERVER_PW,
        STORED_NONCE,
    )
}

#[test]
fn a_good_digest_gives_the_session_to_open() {
    let mut n = Notification::new(SERVER, 0x0A2B);
    n.ui_mode = UiMode::UserInteraction;
    n.vendor = vec![1, 2, 3];
    let bytes = signed(&n, SERVER, SERVER_PW, STORED_NONCE);
    let notice = verify(&tree(), &bytes).unwrap();
    assert_eq!(
        notice,
        Notice {
            server_id: SERVER.into(),
            session_id: 0x0A2B,
            session_id_hex: "A2B".into(),
            ui_mode: UiMode::UserInteraction,
            initiator: Initiator::Server,
            nonce_reset: false,
            vendor: vec![1, 2, 3],
            digest: bytes[..16].try_into().unwrap(),
        }
    );
}

#[test]
fn refusals_name_their_reason() {
    let t = tree();
    let wrong_pw = signed(&Notification::new(SERVER, 7), SERVER, "guess", STORED_NONCE);
    assert_eq!(
        verify(&t, &wrong_pw),
        Err(NotifyError::BadDigest(SERVER.into()))
    );
    let stale = signed(&Notification::new(SERVER, 7), SERVER, SERVER_PW, b"old");
    assert_eq!(
        verify(&t, &stale),
        Err(NotifyError::BadDigest(SERVER.into()))
    );
    let mut n = Notification::new(SERVER, 7);
    n.vendor = vec![0x00];
    let mut altered = signed(&n, SERVER, SERVER_PW, STORED_NONCE);
    *altered.last_mut().unwrap() = 0x01; // vendor data changed after signing
    assert_eq!(
        verify(&t, &altered),
        Err(NotifyError::BadDigest(SERVER.into()))
    );
    let other = signed(
        &Notification::new("other", 7),
        "other",
        SERVER_PW,
        STORED_NONCE,
    );
    assert_eq!(
        verify(&t, &other),
        Err(NotifyError::UnknownServer("other".into()))
    );
    assert!(matches!(
        verify(&t, &package(7)[..20]),
        Err(NotifyError::Malformed(syncml_core::Error::Notification(
            NotificationProblem::Truncated { len: 20, .. }
        )))
    ));
}

#[test]
fn the_reset_nonce_is_accepted_and_flagged() {
    let bytes = signed(
        &Notification::new(SERVER, 9),
        SERVER,
        SERVER_PW,
        RESET_NONCE,
    );
    let notice = verify(&tree(), &bytes).unwrap();
    assert!(notice.nonce_reset);
    assert_eq!(notice.session_id, 9);
    // Four zero bytes are not the reset nonce (see syncml_core::notify).
    let zeros = signed(&Notification::new(SERVER, 9), SERVER, SERVER_PW, &[0; 4]);
    assert_eq!(
        verify(&tree(), &zeros),
        Err(NotifyError::BadDigest(SERVER.into()))
    );
}

#[test]
fn the_key_name_is_the_server_credentials_name_else_the_server_id() {
    let mut t = Tree::new();
    account_12(&mut t, "named", "named-dm", "named-auth", b"pw1");
    account_12(&mut t, "bare", "bare-dm", "", b"pw2");
    let n = Notification::new("named-dm", 3);
    assert!(verify(&t, &signed(&n, "named-auth", "pw1", STORED_NONCE)).is_ok());
    assert_eq!(
        verify(&t, &signed(&n, "named-dm", "pw1", STORED_NONCE)),
        Err(NotifyError::BadDigest("named-dm".into()))
    );
    let n = Notification::new("bare-dm", 3);
    assert!(verify(&t, &signed(&n, "bare-dm", "pw2", STORED_NONCE)).is_ok());

    // DM 1.1.2 layout: ServerPW and ServerNonce, the name is the ServerId.
    let o = "./SyncML/DMAcc/old";
    leaf(&mut t, &format!("{o}/ServerId"), Format::Chr, b"legacy");
    leaf(&mut t, &format!("{o}/ServerPW"), Format::Chr, b"pw3");
    leaf(&mut t, &format!("{o}/ServerNonce"), Format::Bin, b"n11");
    let n = Notification::new("legacy", 0xFFFF);
    let notice = verify(&t, &signed(&n, "legacy", "pw3", b"n11")).unwrap();
    assert_eq!(notice.session_id_hex, "FFFF");
}

#[test]
fn accounts_without_a_usable_server_password_are_refused() {
    let mut t = Tree::new();
    account_12(&mut t, "empty", "empty-dm", "empty-dm", b"");
    account_12(&mut t, "binary", "bin-dm", "bin-dm", &[0xFF, 0xFE]);
    leaf(&mut t, "./DMAcc/nosrv/ServerID", Format::Chr, b"nosrv-dm");
    let n = |id: &str| signed(&Notification::new(id, 1), id, "", STORED_NONCE);
    assert_eq!(
        verify(&t, &n("empty-dm")),
        Err(NotifyError::NoServerSecret("empty-dm".into()))
    );
    assert_eq!(
        verify(&t, &n("nosrv-dm")),
        Err(NotifyError::NoServerSecret("nosrv-dm".into()))
    );
    assert_eq!(
        verify(&t, &n("bin-dm")),
        Err(NotifyError::SecretNotText("bin-dm".into()))
    );
}

#[test]
fn a_replayed_notification_is_recognised() {
    let t = tree();
    let mut filter = ReplayFilter::new(Duration::from_secs(300), 32);
    let now = Instant::now();
    let first = verify(&t, &package(0x51)).unwrap();
    assert!(filter.admit(&first, now));
    let again = verify(&t, &package(0x51)).unwrap();
    assert!(!filter.admit(&again, now + Duration::from_secs(5)));
    let next = verify(&t, &package(0x52)).unwrap();
    assert!(filter.admit(&next, now + Duration::from_secs(6)));
    assert!(filter.admit(&again, now + Duration::from_secs(301)));
}

/// A WSP connectionless push of `data` with content type `ct` (one octet) and an
/// X-Wap-Application-Id header (0xAF) of 0x87.
fn wsp_push(ct: u8, data: &[u8]) -> Vec<u8> {
    let mut pdu = vec![0x2A, 0x06, 0x03, ct, 0xAF, 0x87];
    pdu.extend_from_slice(data);
    pdu
}

#[test]
fn udp_listener_receives_bare_and_wsp_wrapped_packages() {
    let listener = UdpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let wait = Duration::from_secs(5);

    let bare = package(0x100);
    sender.send_to(&bare, to).unwrap();
    let got = listener.recv(wait).unwrap().unwrap();
    assert_eq!(got, bare);
    assert_eq!(verify(&tree(), &got).unwrap().session_id, 0x100);

    // A push of another content type (SI, 0x2E) is dropped; the next one is taken.
    sender.send_to(&wsp_push(0xAE, b"not for DM"), to).unwrap();
    let wrapped = package(0x101);
    sender.send_to(&wsp_push(0xC4, &wrapped), to).unwrap();
    assert_eq!(listener.recv(wait).unwrap().unwrap(), wrapped);

    // The content type as text in the general form, with a parameter (charset
    // utf-8): 38 bytes, over the 30 of a short length, so a length quote (31) and a
    // uintvar give it.
    let ct = b"application/vnd.syncml.notification\0";
    let value_len = u8::try_from(ct.len() + 2).unwrap();
    let mut pdu = vec![0x01, 0x06, value_len + 2, 31, value_len];
    pdu.extend_from_slice(ct);
    pdu.extend_from_slice(&[0x81, 0xEA]);
    let text_typed = package(0x102);
    pdu.extend_from_slice(&text_typed);
    sender.send_to(&pdu, to).unwrap();
    assert_eq!(listener.recv(wait).unwrap().unwrap(), text_typed);

    // Junk is handed on for verify to refuse.
    sender.send_to(b"hello", to).unwrap();
    let junk = listener.recv(wait).unwrap().unwrap();
    assert_eq!(junk, b"hello");
    assert!(matches!(
        verify(&tree(), &junk),
        Err(NotifyError::Malformed(_))
    ));
}

#[test]
fn udp_listener_times_out_quietly() {
    let listener = UdpListener::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    assert_eq!(listener.recv(Duration::from_millis(200)).unwrap(), None);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A wait that dropped a push still ends at the deadline.
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(&wsp_push(0xAE, b"x"), listener.local_addr().unwrap())
        .unwrap();
    assert_eq!(listener.recv(Duration::from_millis(200)).unwrap(), None);
}

#[cfg(feature = "http")]
mod longpoll {
    use super::*;
    use dm_client::notify::LongPoll;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;
    use syncml_core::notify::MAX_SIZE;

    enum Answer {
        /// Sends these bytes.
        Bytes(Vec<u8>),
        /// Reads the request and holds the connection until the client leaves.
        Hold,
    }

    /// Serves one connection per answer on loopback; sends back each request head.
    fn serve(answers: Vec<Answer>) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/dm/poll", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for answer in answers {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                match answer {
                    Answer::Bytes(b) => {
                        let _ = s.write_all(&b);
                    }
                    Answer::Hold => while s.read(&mut byte).unwrap_or(0) > 0 {},
                }
            }
        });
        (url, rx)
    }

    fn reply(status: &str, content_type: Option<&str>, body: &[u8]) -> Answer {
        let mut r = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        if let Some(ct) = content_type {
            r.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = r.into_bytes();
        bytes.extend_from_slice(body);
        Answer::Bytes(bytes)
    }

    const NOTIFICATION: Option<&str> = Some("application/vnd.syncml.notification");

    #[test]
    fn a_notification_then_nothing() {
        let pkg = package(0x77);
        let (url, heads) = serve(vec![
            reply(
                "200 OK",
                Some("Application/Vnd.Syncml.Notification; x=1"),
                &pkg,
            ),
            reply("204 No Content", None, b""),
        ]);
        let poll = LongPoll::new(&url, "IMEI:001 02", Duration::from_secs(20));
        let got = poll.poll().unwrap().unwrap();
        assert_eq!(verify(&tree(), &got).unwrap().session_id, 0x77);
        let head = heads.recv().unwrap();
        assert!(
            head.starts_with("GET /dm/poll?devid=IMEI%3A001%2002&wait=20 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head
            .to_ascii_lowercase()
            .contains("accept: application/vnd.syncml.notification\r\n"));
        assert_eq!(poll.poll(), Ok(None));
    }

    #[test]
    fn bad_answers_are_errors() {
        let (url, _heads) = serve(vec![
            reply("200 OK", Some("text/html"), b"<html>"),
            reply("200 OK", None, b"x"),
            reply("503 Busy", NOTIFICATION, b""),
            reply("200 OK", NOTIFICATION, &vec![0; MAX_SIZE]),
            reply("200 OK", NOTIFICATION, &vec![0; MAX_SIZE + 1]),
        ]);
        let poll = LongPoll::new(&url, "d", Duration::from_secs(5));
        assert_eq!(
            poll.poll(),
            Err(NotifyError::ContentType(Some("text/html".into())))
        );
        assert_eq!(poll.poll(), Err(NotifyError::ContentType(None)));
        assert_eq!(poll.poll(), Err(NotifyError::Status(503)));
        // The limit is inclusive.
        assert_eq!(poll.poll().unwrap().map(|b| b.len()), Some(MAX_SIZE));
        assert_eq!(poll.poll(), Err(NotifyError::TooLarge { limit: MAX_SIZE }));
    }

    #[test]
    fn a_silent_server_times_out_after_wait_and_grace() {
        let (url, _heads) = serve(vec![Answer::Hold]);
        let poll =
            LongPoll::new(&url, "d", Duration::from_secs(1)).with_grace(Duration::from_millis(300));
        let start = Instant::now();
        assert_eq!(poll.poll(), Err(NotifyError::Timeout));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1300), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn unreachable_and_malformed_urls() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let closed = LongPoll::new(&format!("http://127.0.0.1:{port}/"), "d", Duration::ZERO);
        assert!(matches!(closed.poll(), Err(NotifyError::Network(_))));
        let bad = LongPoll::new("no scheme here", "d", Duration::ZERO);
        assert!(matches!(bad.poll(), Err(NotifyError::BadUrl(_))));
        assert!(matches!(
            LongPoll::new("https://x/", "d", Duration::ZERO)
                .with_root_certs_pem(&[b"nope".to_vec()]),
            Err(NotifyError::BadRootCert(_))
        ));
    }
}
