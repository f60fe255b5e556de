//! `syncml`: decode, encode and check SyncML DM messages; compute credentials and
//! HMAC headers; build and parse package #0 notifications.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use syncml_core::auth::{basic_data, md5_data, HmacHeader, Nonce, UserKey};
use syncml_core::codec::{transcode, EncodeOptions};
use syncml_core::error::OneLine;
use syncml_core::notify::{self, Initiator, NonceUsed, Notification, Package0, UiMode};
use syncml_core::{Encoding, Error, Limits, MessageReader};

/// Decode, encode and check SyncML DM 1.2 / 1.1.2 messages (XML or WBXML); compute
/// credentials and HMAC headers; build and parse package #0 notifications.
#[derive(Parser)]
#[command(name = "syncml", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a message as indented XML, whatever its encoding.
    Decode {
        /// The message file, or - for standard input.
        input: String,
        #[command(flatten)]
        input_opts: InputOpts,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Re-encode a message as WBXML or XML.
    Encode {
        /// The encoding to write.
        #[arg(long, value_parser = ["xml", "wbxml"])]
        to: String,
        /// WBXML: put no strings in the string table (only LITERAL tag names, which
        /// WBXML can carry nowhere else).
        #[arg(long)]
        no_string_table: bool,
        /// XML: indent the output.
        #[arg(long)]
        indent: bool,
        /// WBXML: the version byte to write (1.1, 1.2 or 1.3).
        #[arg(long, default_value = "1.2", value_parser = ["1.1", "1.2", "1.3"])]
        wbxml_version: String,
        /// The message file, or - for standard input.
        input: String,
        #[command(flatten)]
        input_opts: InputOpts,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check that a message is valid: exit 0 if it is; else exit 1 with one line on
    /// standard error naming the byte offset and the problem.
    Check {
        /// The message file, or - for standard input.
        input: String,
        #[command(flatten)]
        input_opts: InputOpts,
    },
    /// Print the Data of a SyncHdr Cred element.
    #[command(subcommand)]
    Cred(CredCmd),
    /// Print the x-syncml-hmac header value for a message's exact bytes.
    Hmac {
        #[command(flatten)]
        account: Account,
        /// The nonce (the b64 NextNonce the receiver issued).
        #[arg(long, value_name = "B64")]
        nonce_b64: String,
        /// Instead of printing, check this header value against the message: exit 0
        /// if it verifies, 1 if not.
        #[arg(long, value_name = "HEADER")]
        verify: Option<String>,
        /// The message file, or - for standard input.
        input: String,
    },
    /// Build or parse a package #0 (server-initiated session notification).
    #[command(subcommand)]
    Notify(NotifyCmd),
}

#[derive(Subcommand)]
enum CredCmd {
    /// syncml:auth-basic: B64(user:password).
    Basic {
        #[command(flatten)]
        account: Account,
    },
    /// syncml:auth-md5: B64(MD5(B64(MD5(user:password)):nonce)). The user name goes
    /// in the SyncHdr Source/LocName.
    Md5 {
        #[command(flatten)]
        account: Account,
        /// The nonce (the b64 NextNonce of the last challenge).
        #[arg(long, value_name = "B64")]
        nonce_b64: String,
    },
}

#[derive(Args)]
struct Account {
    /// The user name (for a server's credentials, the server id).
    #[arg(long)]
    user: String,
    /// The password (or set SYNCML_PASSWORD, which keeps it out of the process list).
    #[arg(long, env = "SYNCML_PASSWORD", hide_env_values = true)]
    password: String,
}

#[derive(Subcommand)]
enum NotifyCmd {
    /// Build a package #0 signed with the server's id and password.
    Build {
        /// The server id, as in the device's DM account.
        #[arg(long)]
        server_id: String,
        /// The server password the device holds (or set SYNCML_PASSWORD).
        #[arg(long, env = "SYNCML_PASSWORD", hide_env_values = true)]
        password: String,
        /// The nonce the device expects (b64).
        #[arg(long, value_name = "B64")]
        nonce_b64: String,
        /// The session id in hex, 1 to FFFF.
        #[arg(long, value_name = "HEX", value_parser = parse_session_id)]
        session_id: u16,
        /// The user-interaction mode the server recommends.
        #[arg(long, value_parser = ["background", "informative", "user-interaction", "not-specified"])]
        ui_mode: String,
        /// Who caused the session.
        #[arg(long, default_value = "server", value_parser = ["server", "client"])]
        initiator: String,
        /// Vendor-specific bytes to append, in hex.
        #[arg(long, value_name = "HEX", value_parser = parse_hex)]
        vendor_hex: Option<Hex>,
        /// The version field: 11 (what the specification mandates) or 12.
        #[arg(long, default_value_t = notify::VERSION, value_parser = clap::value_parser!(u16).range(11..=12))]
        version: u16,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print the message as hex instead of raw bytes.
        #[arg(long)]
        hex: bool,
    },
    /// Print every field of a package #0; with --nonce-b64 and the password, say
    /// whether its digest verifies (exit 1 if it does not).
    Parse {
        /// The package #0 file, or - for standard input.
        input: String,
        /// The server password (or set SYNCML_PASSWORD); the server id comes from
        /// the message.
        #[arg(long, env = "SYNCML_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// The nonce the device holds for the server (b64): check the digest with it.
        #[arg(long, value_name = "B64", requires = "password")]
        nonce_b64: Option<String>,
        /// If the digest fails with that nonce, try the reset nonce (the text
        /// "0x00000000"), as a client may.
        #[arg(long, requires = "nonce_b64")]
        try_reset_nonce: bool,
    },
}

fn parse_session_id(s: &str) -> Result<u16, String> {
    let digits = s.trim_start_matches("0x").trim_start_matches("0X");
    match u16::from_str_radix(digits, 16) {
        Ok(0) => Err("the session id must be 1 to FFFF".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a hex number of at most 4 digits")),
    }
}

/// Bytes given in hex on the command line.
#[derive(Clone)]
struct Hex(Vec<u8>);

fn parse_hex(s: &str) -> Result<Hex, String> {
    let s: String = s.split_whitespace().collect();
    if s.len() % 2 == 1 {
        return Err("an odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| format!("{:?} is not hex", &s[i..]))
        })
        .collect::<Result<_, _>>()
        .map(Hex)
}

#[derive(Args)]
struct InputOpts {
    /// Take the input encoding from this media type (for example
    /// application/vnd.syncml.dm+wbxml) instead of detecting it from the first bytes.
    #[arg(long)]
    content_type: Option<String>,
}

#[derive(Args)]
struct LimitArgs {
    /// Largest accepted message in bytes.
    #[arg(long, global = true, default_value_t = Limits::DEFAULT.max_message_size)]
    max_message_size: usize,
    /// Deepest accepted element nesting.
    #[arg(long, global = true, default_value_t = Limits::DEFAULT.max_depth)]
    max_depth: usize,
    /// Most commands plus items in a message.
    #[arg(long, global = true, default_value_t = Limits::DEFAULT.max_items)]
    max_items: usize,
    /// Longest accepted string or data run in bytes.
    #[arg(long, global = true, default_value_t = Limits::DEFAULT.max_string_len)]
    max_string_len: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_message_size: self.max_message_size,
            max_depth: self.max_depth,
            max_items: self.max_items,
            max_string_len: self.max_string_len,
        }
    }
}

/// A failure: bad input (exit 1) or trouble reading or writing files (exit 2).
enum Failure {
    Invalid(String, Error),
    Io(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(name, e)) => {
            eprintln!("{name}: {}", OneLine(&e));
            ExitCode::from(1)
        }
        Err(Failure::Io(msg)) => {
            eprintln!("syncml: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let limits = cli.limits.limits();
    match &cli.cmd {
        Cmd::Decode {
            input,
            input_opts,
            output,
        } => {
            let bytes = load(input, input_opts, &limits)?;
            let out = transcode(&bytes, Encoding::Xml, &EncodeOptions::indented(), &limits)
                .map_err(|e| Failure::Invalid(display_name(input), e))?;
            write_output(output.as_ref(), &out)
        }
        Cmd::Encode {
            to,
            no_string_table,
            indent,
            wbxml_version,
            input,
            input_opts,
            output,
        } => {
            let bytes = load(input, input_opts, &limits)?;
            let to: Encoding = to.parse().map_err(Failure::Io)?;
            let mut opts = if *indent {
                EncodeOptions::indented()
            } else {
                EncodeOptions::default()
            };
            opts.wbxml.string_table = !no_string_table;
            opts.wbxml.version = match wbxml_version.as_str() {
                "1.1" => 0x01,
                "1.3" => 0x03,
                _ => 0x02,
            };
            let out = transcode(&bytes, to, &opts, &limits)
                .map_err(|e| Failure::Invalid(display_name(input), e))?;
            write_output(output.as_ref(), &out)
        }
        Cmd::Check { input, input_opts } => {
            let bytes = load(input, input_opts, &limits)?;
            let name = display_name(input);
            let mut r = MessageReader::new(&bytes, limits)
                .map_err(|e| Failure::Invalid(name.clone(), e))?;
            let mut n = 0usize;
            while r
                .next_command()
                .map_err(|e| Failure::Invalid(name.clone(), e))?
                .is_some()
            {
                n += 1;
            }
            // Success is quiet on stderr; a short summary goes to stdout.
            println!(
                "{name}: valid, {n} commands{}",
                if r.is_final() { ", final" } else { "" }
            );
            Ok(())
        }
        Cmd::Cred(c) => cred(c),
        Cmd::Hmac {
            account,
            nonce_b64,
            verify,
            input,
        } => hmac(account, nonce_b64, verify.as_deref(), input, &limits),
        Cmd::Notify(n) => notification(n),
    }
}

fn nonce(b64: &str) -> Result<Nonce, Failure> {
    Nonce::from_b64(b64).map_err(|e| Failure::Invalid("--nonce-b64".into(), e))
}

fn cred(c: &CredCmd) -> Result<(), Failure> {
    let data = match c {
        CredCmd::Basic { account } => basic_data(&account.user, &account.password),
        CredCmd::Md5 { account, nonce_b64 } => md5_data(
            &UserKey::new(&account.user, &account.password),
            &nonce(nonce_b64)?,
        ),
    };
    println!("{data}");
    Ok(())
}

fn hmac(
    account: &Account,
    nonce_b64: &str,
    verify: Option<&str>,
    input: &str,
    limits: &Limits,
) -> Result<(), Failure> {
    let key = UserKey::new(&account.user, &account.password);
    let nonce = nonce(nonce_b64)?;
    let body = read_input(input, limits)?;
    match verify {
        None => println!("{}", HmacHeader::compute(&key, &nonce, &body)),
        Some(h) => {
            let invalid = |e| Failure::Invalid(display_name(input), e);
            HmacHeader::parse(h)
                .and_then(|h| h.verify(&key, &nonce, &body))
                .map_err(invalid)?;
            println!("{}: the HMAC verifies", display_name(input));
        }
    }
    Ok(())
}

fn notification(n: &NotifyCmd) -> Result<(), Failure> {
    match n {
        NotifyCmd::Build {
            server_id,
            password,
            nonce_b64,
            session_id,
            ui_mode,
            initiator,
            vendor_hex,
            version,
            output,
            hex,
        } => {
            let ui_mode = match ui_mode.as_str() {
                "background" => UiMode::Background,
                "informative" => UiMode::Informative,
                "user-interaction" => UiMode::UserInteraction,
                _ => UiMode::NotSpecified,
            };
            let initiator = if initiator == "client" {
                Initiator::Client
            } else {
                Initiator::Server
            };
            let msg = Notification {
                version: *version,
                ui_mode,
                initiator,
                session_id: *session_id,
                server_id: server_id.clone(),
                vendor: vendor_hex.as_ref().map(|h| h.0.clone()).unwrap_or_default(),
            };
            let bytes = msg
                .build(&UserKey::new(server_id, password), &nonce(nonce_b64)?)
                .map_err(|e| Failure::Invalid("notify build".into(), e))?;
            if *hex {
                let mut text = to_hex(&bytes);
                text.push('\n');
                write_output(output.as_ref(), text.as_bytes())
            } else {
                write_output(output.as_ref(), &bytes)
            }
        }
        NotifyCmd::Parse {
            input,
            password,
            nonce_b64,
            try_reset_nonce,
        } => {
            let name = display_name(input);
            let bytes = read_input(input, &Limits::DEFAULT)?;
            let p = Package0::parse(&bytes).map_err(|e| Failure::Invalid(name.clone(), e))?;
            let n = &p.notification;
            println!("version: {}", n.version);
            println!("ui-mode: {}", n.ui_mode.name());
            let initiator = match n.initiator {
                Initiator::Server => "server",
                Initiator::Client => "client",
            };
            println!("initiator: {initiator}");
            println!(
                "session-id: {} (decimal {})",
                n.session_id_hex(),
                n.session_id
            );
            println!("server-id: {}", n.server_id);
            println!("vendor: {} bytes {}", n.vendor.len(), to_hex(&n.vendor));
            println!("digest: {}", to_hex(&p.digest));
            let (Some(password), Some(nonce_b64)) = (password, nonce_b64) else {
                return Ok(());
            };
            let key = UserKey::new(&n.server_id, password);
            let stored = nonce(nonce_b64)?;
            let checked = if *try_reset_nonce {
                p.verify_or_reset(&key, &stored)
            } else {
                p.verify(&key, &stored).map(|()| NonceUsed::Stored)
            };
            match checked {
                Ok(NonceUsed::Stored) => println!("verified: yes (with the given nonce)"),
                Ok(NonceUsed::Reset) => {
                    println!("verified: yes (with the reset nonce \"0x00000000\")")
                }
                Err(e) => {
                    println!("verified: no");
                    return Err(Failure::Invalid(name, e));
                }
            }
            Ok(())
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn display_name(input: &str) -> String {
    if input == "-" {
        "<stdin>".to_owned()
    } else {
        input.to_owned()
    }
}

/// Reads the input and, when a media type is given, checks that the first bytes agree
/// with it.
fn load(input: &str, opts: &InputOpts, limits: &Limits) -> Result<Vec<u8>, Failure> {
    let bytes = read_input(input, limits)?;
    if let Some(ct) = &opts.content_type {
        let want =
            Encoding::from_media_type(ct).map_err(|e| Failure::Invalid(display_name(input), e))?;
        let got = Encoding::detect(&bytes).map_err(|e| Failure::Invalid(display_name(input), e))?;
        if want != got {
            return Err(Failure::Invalid(
                display_name(input),
                Error::decode(
                    0,
                    syncml_core::Problem::MediaType(format!("{ct} does not match {got:?} content")),
                ),
            ));
        }
    }
    Ok(bytes)
}

fn read_input(input: &str, limits: &Limits) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    // Read one byte past the limit so an oversized input is reported, not truncated.
    let cap = limits.max_message_size as u64 + 1;
    let io = |e: std::io::Error| Failure::Io(format!("cannot read {}: {e}", display_name(input)));
    let size = if input == "-" {
        std::io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut buf)
            .map_err(io)?;
        buf.len()
    } else {
        let f = std::fs::File::open(input).map_err(io)?;
        let size = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
        f.take(cap).read_to_end(&mut buf).map_err(io)?;
        size.max(buf.len())
    };
    if buf.len() > limits.max_message_size {
        // Said here rather than by the decoder, which sees only what was read.
        let problem = syncml_core::Problem::MessageTooLarge {
            size,
            limit: limits.max_message_size,
        };
        return Err(Failure::Invalid(
            display_name(input),
            Error::decode(0, problem),
        ));
    }
    Ok(buf)
}

fn write_output(output: Option<&PathBuf>, data: &[u8]) -> Result<(), Failure> {
    let res = match output {
        Some(p) => std::fs::write(p, data),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(data).and_then(|_| out.flush())
        }
    };
    res.map_err(|e| Failure::Io(format!("cannot write output: {e}")))
}
