//! `Type=notify`: the built binary tells the socket in NOTIFY_SOCKET where it
//! stands, in order: READY=1 once it accepts, RELOADING=1 (with
//! MONOTONIC_USEC) and READY=1 around every reload, accepted or refused,
//! STOPPING=1 when SIGTERM starts the drain.
//!
//! Socket activation: systemd's own `systemd-socket-activate` holds the
//! ports and starts the binary on the first connection, passing the sockets
//! as LISTEN_FDS.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::support::*;

/// The next datagram's lines; panics after 10 s with what came before.
fn next(socket: &UnixDatagram, seen: &mut Vec<String>) -> Vec<String> {
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(text.clone());
            text.lines().map(str::to_owned).collect()
        }
        Err(e) => panic!("no notification within 10 s ({e}); so far: {seen:?}"),
    }
}

fn hup(pid: u32) {
    assert!(std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
}

fn assert_reloading(lines: &[String], seen: &[String]) {
    assert_eq!(lines.first().map(String::as_str), Some("RELOADING=1"), "{seen:?}");
    let usec = lines.iter().find_map(|l| l.strip_prefix("MONOTONIC_USEC="));
    assert!(usec.is_some_and(|u| u.parse::<u64>().is_ok_and(|u| u > 0)), "MONOTONIC_USEC: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_ready_reloading_and_stopping_in_order() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let config = binary_toml(upstream.addr).write(ca.dir.path());
    let socket_path = ca.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();

    let proxy = RunningBinary::start(&config, &format!("export NOTIFY_SOCKET='{}';", socket_path.display()));
    let ready = tokio::task::block_in_place(|| next(&socket, &mut seen));
    assert_eq!(ready, ["READY=1"], "the first notification: {seen:?}");
    // READY=1 promises the port accepts and SIGHUP is handled: a reload at
    // once (its default action would end the process).
    std::net::TcpStream::connect(("127.0.0.1", proxy.port())).expect("accepting at READY=1");
    hup(proxy.pid());
    let lines = tokio::task::block_in_place(|| next(&socket, &mut seen));
    assert_reloading(&lines, &seen);
    let first_usec = lines.iter().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).unwrap().to_owned();
    assert_eq!(tokio::task::block_in_place(|| next(&socket, &mut seen)), ["READY=1"], "{seen:?}");
    proxy.wait_for_log(&["reload (SIGHUP) done"], 10).await;
    let url = format!("https://localhost:{}/alive", proxy.port());
    assert_eq!(curl_get(&ca, &url).await, (true, b"\"alive\"".to_vec()));

    // A refused reload: the old configuration stays, so READY=1 again.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nupstrem = \"http://127.0.0.1:1\"\n").unwrap();
    hup(proxy.pid());
    let lines = tokio::task::block_in_place(|| next(&socket, &mut seen));
    assert_reloading(&lines, &seen);
    let second_usec = lines.iter().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).unwrap();
    assert!(second_usec.parse::<u64>().unwrap() > first_usec.parse::<u64>().unwrap(), "{seen:?}");
    assert_eq!(tokio::task::block_in_place(|| next(&socket, &mut seen)), ["READY=1"], "{seen:?}");
    proxy.wait_for_log(&["reload (SIGHUP) refused"], 10).await;
    assert_eq!(curl_get(&ca, &url).await, (true, b"\"alive\"".to_vec()), "still serving");

    let (exit, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit}\n{log}");
    assert_eq!(next(&socket, &mut seen), ["STOPPING=1"], "{seen:?}");
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 64];
    assert!(socket.recv(&mut buf).is_err(), "nothing after STOPPING=1: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notify_socket_nothing_is_sent_and_it_still_runs() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let proxy =
        RunningBinary::start(&binary_toml(upstream.addr).write(ca.dir.path()), "unset NOTIFY_SOCKET;");
    // Serving, so past installing its SIGHUP handler (there is no READY=1 to wait for).
    let url = format!("https://localhost:{}/alive", proxy.port());
    assert_eq!(curl_get(&ca, &url).await, (true, b"\"alive\"".to_vec()));
    hup(proxy.pid());
    proxy.wait_for_log(&["reload (SIGHUP) done"], 10).await;
    let (exit, log) = tokio::task::spawn_blocking(move || proxy.stop()).await.unwrap();
    assert!(exit.success(), "{exit}\n{log}");
    assert!(!log.contains("NOTIFY_SOCKET"), "no notify warning: {log}");
}

/// systemd-socket-activate binds the ports (without SO_REUSEPORT, so a
/// bind of its own by vaultgate would fail as "in use") and starts vaultgate
/// only when the first connection arrives: that connection, made while no
/// vaultgate ran, is served, the metrics socket too, and a passed socket
/// that no listener wants is named in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_the_sockets_systemd_passes() {
    let upstream = Upstream::standin().start().await;
    let ca = TestCa::new();
    let (https, metrics, stray) = (free_port(), free_port(), free_port());
    let config = binary_toml(upstream.addr)
        .listen(format!("127.0.0.1:{https}"))
        .extra(&format!("[limits]\nworkers = 2\n[metrics]\nlisten = \"127.0.0.1:{metrics}\""))
        .write(ca.dir.path());
    let mut child = std::process::Command::new(tool(Tool::SystemdSocketActivate))
        .args(["-l", &format!("127.0.0.1:{https}")])
        .args(["-l", &format!("127.0.0.1:{metrics}")])
        .args(["-l", &format!("127.0.0.1:{stray}")])
        .arg(RunningBinary::PATH)
        .arg("--config")
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    within("systemd-socket-activate to listen", async {
        while tokio::net::TcpStream::connect(("127.0.0.1", https)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // That probe started vaultgate; this request may well be queued in the
    // socket before vaultgate accepts.
    let url = format!("https://localhost:{https}/alive");
    assert_eq!(curl_get(&ca, &url).await, (true, b"\"alive\"".to_vec()));
    let out = tokio::process::Command::new(tool(Tool::Curl))
        .args(["-sS", "--max-time", "10", &format!("http://127.0.0.1:{metrics}/metrics")])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("vaultgate_build_info"), "{out:?}");
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains(&format!("socket systemd passed for 127.0.0.1:{https}")), "{log}");
    assert!(
        log.contains(&format!("systemd passed a socket for 127.0.0.1:{stray} that matches no listener")),
        "{log}"
    );
}
