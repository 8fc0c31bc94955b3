//! What the tests over an S3-compatible server share: moto on loopback (`scripts/test` installs
//! it), with a bucket, and `prism` run against it.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("PRISM_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("moto_server"))
        .find(|p| p.exists())
        .expect("no moto_server: install PyPI's moto[server] (scripts/test does) or set PRISM_MOTO_SERVER")
}

/// Sends one plain HTTP request to the server and returns its status line.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> String {
    try_http(port, method, path, body).unwrap()
}

fn try_http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

pub fn start() -> Moto {
    start_with_bucket("prism-test")
}

/// Moto on a loopback port of its own choosing (it says which on its log, which is then read
/// to the end so that it never blocks on it), with an empty bucket `bucket`. Choosing a free
/// port here instead raced with the other tests of the binary starting theirs.
pub fn start_with_bucket(bucket: &str) -> Moto {
    use std::io::BufRead as _;
    let mut child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moto_server starts");
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port = log
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let (_, at) = line.split_once("Running on http://127.0.0.1:")?;
            at.trim().parse::<u16>().ok()
        })
        .expect("moto_server says where it listens");
    std::thread::spawn(move || log.for_each(drop));
    let moto = Moto { child, port };
    for _ in 0..200 {
        if let Ok(created) = try_http(port, "PUT", &format!("/{bucket}"), b"") {
            assert!(created.starts_with("HTTP/1.1 200"), "{created}");
            return moto;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("moto_server did not answer on port {port}");
}

pub fn prism(moto: &Moto, state: &Path, args: &[&str]) -> Output {
    prism_at(moto, state, "s3://prism-test/warehouse", args)
}

pub fn prism_at(moto: &Moto, state: &Path, data: &str, args: &[&str]) -> Output {
    prism_command(moto, state, data, args).output().unwrap()
}

/// `prism ARGS` over `data` on moto's bucket, with the app's state in `state`, not yet run.
pub fn prism_command(moto: &Moto, state: &Path, data: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prism"));
    command
        .args(args)
        .args([
            "--data",
            data,
            "--state",
            state.to_str().unwrap(),
            "--storage-option",
            &format!("aws_endpoint=http://127.0.0.1:{}", moto.port),
            "--storage-option",
            "aws_allow_http=true",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("PRISM_CLUSTER");
    command
}

pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn fixture() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/tiny").to_string()
}
