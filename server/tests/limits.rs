//! What a peer can hold before and after it authenticates: deadlines,
//! connection caps, bounded buffers and rate limits, each tried as an
//! attacker would (issue 11; `docs/threat-model.md`, "Limits that hold"),
//! and each checked to leave everyone else served.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_server::listen::ConnectionLimits;
use common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A TCP connection to `relay` from the source address `from`.
async fn connect_from(from: &str, relay: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    socket.connect(relay).await.expect("connect")
}

/// Whether the relay closes `stream` within `within` (reads until EOF or
/// an error, ignoring whatever it sent).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

/// `GET /health` from `from`: the status and body.
async fn health_from(from: &str, relay: SocketAddr) -> (u16, String) {
    let mut stream = connect_from(from, relay).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn short_deadline() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    }
}

#[tokio::test]
async fn silent_and_slowloris_connections_are_closed_by_the_header_deadline() {
    let relay = start_with(short_deadline()).await;
    let addr = relay.server.addr();
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    // One header byte every 200 ms: never a complete header.
    let trickle = async {
        for byte in b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (_, silent_closed) = tokio::join!(trickle, closed_within(&mut silent, WAIT));
    assert!(silent_closed, "a silent connection is closed");
    assert!(closed_within(&mut slow, WAIT).await, "slowloris is closed");
    // Closed by the deadline, not at once (it is a deadline, not a refusal).
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(health_from("127.0.0.1", addr).await.0, 200);

    // A kept-alive connection idle after its request is closed too.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut idle, WAIT).await,
        "an idle keep-alive is closed"
    );
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let relay = start_with(ConnectionLimits {
        max_per_address: 3,
        max_connections: 6,
        header_read_timeout: Duration::from_secs(60),
    })
    .await;
    let addr = relay.server.addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", addr).await);
    }
    // Let the relay count them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect_from("127.0.0.1", addr).await;
    assert!(
        closed_within(&mut fourth, WAIT).await,
        "the fourth from one address is refused"
    );
    // Another address is served, while the first holds its three.
    assert_eq!(health_from("127.0.0.2", addr).await.0, 200);
    // The total cap: three more from a third address fill it.
    let mut others = vec![
        connect_from("127.0.0.3", addr).await,
        connect_from("127.0.0.3", addr).await,
        connect_from("127.0.0.3", addr).await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect_from("127.0.0.4", addr).await;
    assert!(closed_within(&mut over, WAIT).await, "over the total cap");
    // Connections that close free their places.
    held.clear();
    others.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(health_from("127.0.0.1", addr).await.0, 200);
    assert_eq!(relay.server.state().admission().open(), 0);
    assert!(relay.server.state().admission().refused() >= 2);
}

#[tokio::test]
async fn a_ping_flood_is_cut_off_and_others_are_served() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let (mut client, _) = relay.online(&alice).await;

    // An authenticated device (so no authentication deadline ends it)
    // sends pings without reading the pongs.
    let mallory = relay.device("mallory@east");
    let (flooder, _) = relay.online(&mallory).await;
    let mut flood = flooder.ws;
    for _ in 0..200 {
        if flood
            .send(Message::Ping(vec![0u8; 125].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    // The relay answered at most its limit and then closed the connection
    // ("policy violation", 1008, unless the reset of the pings it did not
    // read overtook the close frame). Without the limit all 200 pongs
    // would come back and the connection stay open.
    let (pongs, close) = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        let mut pongs = 0;
        while let Some(Ok(message)) = flood.next().await {
            match message {
                Message::Pong(_) => pongs += 1,
                Message::Close(frame) => return (pongs, frame.map(|f| u16::from(f.code))),
                _ => {}
            }
        }
        (pongs, None)
    })
    .await
    .expect("the relay ended the connection");
    assert!(
        pongs <= cascade_server::ws::MAX_CONTROL_FRAMES,
        "{pongs} pongs"
    );
    assert!(matches!(close, None | Some(1008)), "{close:?}");
    let limited = relay
        .server
        .state()
        .metrics()
        .rate_limited
        .get_or_create(&cascade_server::metrics::Kind { kind: "pings" })
        .get();
    assert_eq!(limited, 1, "counted in the metrics");
    // Everyone else is served.
    client
        .request(cascade_protocol::frames::Request::Ping)
        .await
        .expect("answered");
    assert_eq!(health_from("127.0.0.2", relay.server.addr()).await.0, 200);
}

/// Raw HTTP: sends `head` (and `body`), returns the status and JSON body.
async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head and as much body as Content-Length says.
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).to_string();
            if let Some(split) = text.find("\r\n\r\n") {
                let length = text[..split]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if answer.len() >= split + 4 + length {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("answered in time");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or(serde_json::Value::Null))
        .unwrap_or(serde_json::Value::Null);
    (status, body)
}

#[tokio::test]
async fn a_declared_ten_gigabyte_body_is_refused_at_once() {
    let relay = start().await;
    let head = "POST /v1/enrol HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n";
    let (status, body) = raw(relay.server.addr(), head, &[b'{'; 1000]).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn every_error_answer_carries_the_json_error_body() {
    let relay = start().await;
    let addr = relay.server.addr();
    let cases = [
        (
            "GET /v1/enrol HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".to_string(),
            405,
            "method_not_allowed",
        ),
        (
            format!(
                "GET /{} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n",
                "a".repeat(9 * 1024)
            ),
            414,
            "uri_too_long",
        ),
        (
            format!(
                "GET /health HTTP/1.1\r\nHost: relay\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "a".repeat(20 * 1024)
            ),
            431,
            "headers_too_large",
        ),
        (
            "GET /v1/ws HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".to_string(),
            400,
            "bad_request",
        ),
        (
            "GET /nowhere HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".to_string(),
            404,
            "not_found",
        ),
    ];
    for (head, status, code) in cases {
        let (got, body) = raw(addr, &head, b"").await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{}",
            &head[..30]
        );
        assert!(body["message"].is_string());
    }
}

#[tokio::test]
async fn an_existing_data_directory_is_made_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("relay");
    std::fs::create_dir(&data).expect("dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _relay = cascade_server::Server::open(&data).expect("open");
    let mode = std::fs::metadata(&data).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// `POST /v1/enrol` from `from` with `body`: the status, `Retry-After` (if
/// any) and the JSON body.
async fn enrol_from(
    from: &str,
    relay: SocketAddr,
    body: &serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    let mut stream = connect_from(from, relay).await;
    let body = serde_json::to_vec(body).expect("json");
    let head = format!(
        "POST /v1/enrol HTTP/1.1\r\nHost: relay\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let retry_after = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_string())
    });
    (
        status,
        retry_after,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn guessing_enrolment_tokens_is_stopped_per_address() {
    let relay = start().await;
    let addr = relay.server.addr();
    let _ = relay.device("alice@north");
    let (status, body) = admin(
        &relay,
        "/v1/admin/enrolment-tokens",
        serde_json::json!({"user_id": "alice@north", "ttl_secs": null}),
    )
    .await;
    assert_eq!(status, 201);
    let token: cascade_protocol::http::EnrolmentToken =
        serde_json::from_slice(&body).expect("token");
    let key = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&rand::random())
            .verifying_key()
            .to_bytes(),
    );
    let attempt = |token: &str| serde_json::json!({"token": token, "signature_key": key, "device_name": "Phone"});
    for n in 0..cascade_server::ENROL_FAILURES_PER_ADDRESS {
        let (status, _, body) =
            enrol_from("127.0.0.1", addr, &attempt(&format!("guess-{n}"))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token"))
        );
    }
    // Now even the right token waits, from that address only.
    let (status, retry_after, body) = enrol_from("127.0.0.1", addr, &attempt(&token.token)).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    let retry_after: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    // The token reads however it was typed (lower case, grouped).
    let typed = format!("{}-{}", &token.token[..4], &token.token[4..]).to_lowercase();
    let (status, _, body) = enrol_from("127.0.0.2", addr, &attempt(&typed)).await;
    assert_eq!(status, 200, "{body}");
}

/// Guessing from many addresses is held off too: after
/// `ENROL_FAILURES_TOTAL` refused attempts from all addresses together,
/// every enrolment waits, from any address.
#[tokio::test]
async fn guessing_enrolment_tokens_from_many_addresses_is_stopped() {
    let relay = start().await;
    let addr = relay.server.addr();
    let _ = relay.device("alice@north");
    let (status, body) = admin(
        &relay,
        "/v1/admin/enrolment-tokens",
        serde_json::json!({"user_id": "alice@north", "ttl_secs": null}),
    )
    .await;
    assert_eq!(status, 201);
    let token: cascade_protocol::http::EnrolmentToken =
        serde_json::from_slice(&body).expect("token");
    assert_eq!(
        token.token.len(),
        cascade_protocol::enrolment_code::TOKEN_CHARS
    );
    let key = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&rand::random())
            .verifying_key()
            .to_bytes(),
    );
    let attempt = |token: &str| serde_json::json!({"token": token, "signature_key": key, "device_name": "Phone"});
    let per_address = cascade_server::ENROL_FAILURES_PER_ADDRESS;
    let addresses = cascade_server::ENROL_FAILURES_TOTAL.div_ceil(per_address);
    let mut refused = 0;
    for a in 0..addresses {
        let from = format!("127.0.1.{}", a + 1);
        for n in 0..per_address {
            if refused == cascade_server::ENROL_FAILURES_TOTAL {
                break;
            }
            let (status, _, body) =
                enrol_from(&from, addr, &attempt(&format!("GUESS{a:02}{n:03}"))).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (401, Some("invalid_token"))
            );
            refused += 1;
        }
    }
    let (status, _, body) = enrol_from("127.0.2.1", addr, &attempt(&token.token)).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
}

/// A frame nested a hundred thousand levels deep (in a field the relay
/// skips) is refused as malformed, without exhausting the relay's stack,
/// and the connection carries on.
#[tokio::test]
async fn deeply_nested_cbor_is_malformed_and_harmless() {
    let relay = start().await;
    let alice = relay.device("alice@north");
    let mut client = relay.online_idle(&alice).await;
    // {"v": 1, "id": 7, "x": [[[…0…]]], "req": "Ping"}
    let mut frame = vec![0xa4, 0x61, b'v', 0x01, 0x62, b'i', b'd', 0x07, 0x61, b'x'];
    frame.extend(std::iter::repeat_n(0x81, 100_000));
    frame.push(0x00);
    frame.extend([0x63, b'r', b'e', b'q', 0x64, b'P', b'i', b'n', b'g']);
    client.send_raw(frame).await;
    match client.frame().await {
        cascade_protocol::frames::ServerFrame::Rejected(
            cascade_protocol::ProtocolError::Malformed { .. },
        )
        | cascade_protocol::frames::ServerFrame::Response {
            result: Err(cascade_protocol::ProtocolError::Malformed { .. }),
            ..
        } => {}
        other => panic!("expected Malformed, got {other:?}"),
    }
    client
        .request(cascade_protocol::frames::Request::Ping)
        .await
        .expect("the connection carries on");
}

/// Fragments each under the frame limit that add up past the message limit
/// end the connection (the relay never assembles more than the limit), and
/// everyone else is served.
#[tokio::test]
async fn fragments_adding_up_past_the_limit_end_the_connection() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let relay = start().await;
    let alice = relay.device("alice@north");
    let (mut other, _) = relay.online(&alice).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.server.ws_url())
        .await
        .expect("connect");
    let chunk = vec![0u8; 1024 * 1024];
    let fragments = cascade_protocol::limits::HARD_MAX_FRAME_BYTES / chunk.len() + 2;
    for n in 0..fragments {
        let opcode = if n == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let last = n + 1 == fragments;
        let frame = Frame::message(chunk.clone(), opcode, last);
        if ws.send(Message::Frame(frame)).await.is_err() {
            break;
        }
    }
    let ended = tokio::time::timeout(WAIT, async {
        use futures_util::StreamExt;
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the relay ended the connection");
    other
        .request(cascade_protocol::frames::Request::Ping)
        .await
        .expect("others are served");
}
