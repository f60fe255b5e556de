//! `syncml`: decode, encode and check SyncML DM messages; compute credentials and
//! HMAC headers; build and parse package #0 notifications; build, inspect and apply
//! firmware update packages.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use syncml_core::auth::{basic_data, md5_data, HmacHeader, Nonce, UserKey};
use syncml_core::codec::{transcode, EncodeOptions};
use syncml_core::error::OneLine;
use syncml_core::notify::{self, Initiator, NonceUsed, Notification, Package0, UiMode};
use syncml_core::package::{
    self as pkg, Package, PackageError, PayloadCheck, PayloadKind, PublicKey, SigningKey, Spec,
};
use syncml_core::{Encoding, Error, Limits, MessageReader};

/// Decode, encode and check SyncML DM 1.2 / 1.1.2 messages (XML or WBXML); compute
/// credentials and HMAC headers; build and parse package #0 notifications; build,
/// inspect and apply firmware update packages.
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
    /// Build, inspect and apply firmware update packages; make signing keys.
    #[command(subcommand)]
    Package(PackageCmd),
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

#[derive(Subcommand)]
enum PackageCmd {
    /// Build a package holding a full image (--full NEW) or a delta from the image
    /// of --from-version to the new one (--delta OLD NEW), optionally signed.
    #[command(group(clap::ArgGroup::new("payload").required(true).args(["full", "delta"])))]
    Build {
        /// The device model the package is for (as in ./DevInfo/Mod).
        #[arg(long)]
        model: String,
        /// The component the package updates.
        #[arg(long, default_value = "firmware")]
        component: String,
        /// The version the package updates from. Required with --delta; for --full,
        /// leave it out to allow any current version.
        #[arg(long, value_name = "A", default_value = "")]
        from_version: String,
        /// The version the package installs.
        #[arg(long, value_name = "B")]
        to_version: String,
        /// The new image: the payload is the whole image.
        #[arg(long, value_name = "NEW")]
        full: Option<PathBuf>,
        /// The old image (of --from-version) and the new one: the payload is a
        /// bsdiff patch.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
        delta: Option<Vec<PathBuf>>,
        /// Sign with this secret key file (made by `syncml package keygen`).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        /// The package file to write.
        #[arg(short, long, value_name = "PKG")]
        output: PathBuf,
    },
    /// Print a package's header and check it: header CRC, payload length, CRC-32
    /// and SHA-256, and with --verify-key the signature. Exit 1 if a check fails.
    Inspect {
        /// The package file (read in chunks, never whole).
        input: PathBuf,
        /// A trusted public key: a file made by `keygen` (KEY.pub) or the key in
        /// base64. Repeat for several; the signature must verify with one.
        #[arg(long, value_name = "PUB")]
        verify_key: Vec<String>,
    },
    /// Make an Ed25519 key pair: KEY (secret seed in base64, mode 0600) and KEY.pub.
    Keygen {
        /// Where to write the secret key; the public key goes to the same path with
        /// ".pub" appended.
        #[arg(short, long, value_name = "KEY")]
        output: PathBuf,
        /// Overwrite existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Check a package and rebuild the new image from it (and the old image, for a
    /// delta).
    Apply {
        /// The package file.
        input: PathBuf,
        /// The current image (required for a delta package).
        #[arg(long, value_name = "OLD")]
        old: Option<PathBuf>,
        /// A trusted public key (file or base64); when given the package must be
        /// signed by one of them.
        #[arg(long, value_name = "PUB")]
        verify_key: Vec<String>,
        /// Largest image to build, in bytes.
        #[arg(long, default_value_t = pkg::MAX_PAYLOAD_LEN)]
        max_len: u64,
        /// Where to write the new image.
        #[arg(short, long, value_name = "NEW")]
        output: PathBuf,
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
    /// A package (or key) that is refused, with the file's name.
    Package(String, PackageError),
    /// Checks failed and the report already says which: exit 1 with this line.
    Checks(String),
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
        Err(Failure::Package(name, e)) => {
            // 402-404 are the verdicts a device would report; 400 says nothing more.
            match e.fumo_result() {
                400 => eprintln!("{name}: {e}"),
                code => eprintln!("{name}: {e} (FUMO result {code})"),
            }
            ExitCode::from(1)
        }
        Err(Failure::Checks(msg)) => {
            eprintln!("{msg}");
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
        Cmd::Package(p) => package(p),
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

fn package(p: &PackageCmd) -> Result<(), Failure> {
    match p {
        PackageCmd::Build {
            model,
            component,
            from_version,
            to_version,
            full,
            delta,
            sign,
            output,
        } => {
            let spec = Spec {
                model: model.clone(),
                component: component.clone(),
                from_version: from_version.clone(),
                to_version: to_version.clone(),
            };
            let key = sign
                .as_ref()
                .map(|path| {
                    let text = read_text(path)?;
                    SigningKey::from_b64(&text).map_err(|e| Failure::Package(show(path), e))
                })
                .transpose()?;
            let refused = |e| Failure::Package("package build".into(), e);
            let bytes = match (full, delta.as_deref()) {
                (Some(new), _) => {
                    spec.validate(PayloadKind::Full).map_err(refused)?;
                    pkg::build_full(&spec, &read_image(new)?, key.as_ref())
                }
                (None, Some([old, new])) => {
                    pkg::build_delta(&spec, &read_image(old)?, &read_image(new)?, key.as_ref())
                        .map_err(refused)?
                }
                // clap requires one of them, and two values for --delta.
                _ => return Err(Failure::Io("give --full NEW or --delta OLD NEW".into())),
            };
            write_output(Some(output), &bytes)?;
            let (header, header_len) =
                pkg::parse_header(&bytes).map_err(|e| Failure::Package(show(output), e))?;
            println!(
                "{}: {} package, {} bytes (header {header_len}, payload {}), {}",
                show(output),
                header.kind.name(),
                bytes.len(),
                header.payload_len,
                if key.is_some() { "signed" } else { "unsigned" }
            );
            Ok(())
        }
        PackageCmd::Inspect { input, verify_key } => {
            let keys = trusted_keys(verify_key)?;
            inspect(input, &keys)
        }
        PackageCmd::Keygen { output, force } => keygen(output, *force),
        PackageCmd::Apply {
            input,
            old,
            verify_key,
            max_len,
            output,
        } => {
            let keys = trusted_keys(verify_key)?;
            let name = show(input);
            let bytes = read_limited(input, pkg::MAX_HEADER_LEN as u64 + pkg::MAX_PAYLOAD_LEN)?;
            let refused = |e| Failure::Package(name.clone(), e);
            let p = Package::parse(&bytes).map_err(refused)?;
            p.check_integrity().map_err(refused)?;
            if !keys.is_empty() {
                p.verify_signature(&keys).map_err(refused)?;
            }
            let current = match (p.header.kind, old) {
                (_, Some(path)) => read_image(path)?,
                (PayloadKind::Full, None) => Vec::new(),
                (PayloadKind::Delta, None) => {
                    return Err(Failure::Io(format!(
                        "{name} is a delta package: give --old"
                    )))
                }
            };
            let image = p.apply(&current, *max_len).map_err(refused)?;
            write_output(Some(output), &image)?;
            println!("{}: {} bytes", show(output), image.len());
            Ok(())
        }
    }
}

/// Prints the header and each check; fails (exit 1) if any check fails. Reads the
/// package in chunks, as a device would from its storage.
fn inspect(input: &PathBuf, keys: &[PublicKey]) -> Result<(), Failure> {
    let name = show(input);
    let io = |e: std::io::Error| Failure::Io(format!("cannot read {name}: {e}"));
    let mut file = std::fs::File::open(input).map_err(io)?;
    let mut prefix = Vec::new();
    (&mut file)
        .take(pkg::MAX_HEADER_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(io)?;
    println!("package: {name}");
    let (h, header_len) = match pkg::parse_header(&prefix) {
        Ok(v) => v,
        Err(e) => {
            println!("header: FAILED: {e} (FUMO result {})", e.fumo_result());
            return Err(Failure::Checks(format!("{name}: the header is not valid")));
        }
    };
    println!("header: ok ({header_len} bytes, header CRC-32 verified)");
    println!("format-version: {}", h.format_version);
    println!("model: {}", h.model.escape_debug());
    println!("component: {}", h.component.escape_debug());
    if h.from_version.is_empty() {
        println!("from-version: (any)");
    } else {
        println!("from-version: {}", h.from_version.escape_debug());
    }
    println!("to-version: {}", h.to_version.escape_debug());
    println!("kind: {}", h.kind.name());
    println!("payload-length: {}", h.payload_len);
    println!("payload-crc32: {:08x}", h.payload_crc32);
    println!("payload-sha256: {}", to_hex(&h.payload_sha256));
    println!("target-length: {}", h.target_len);
    println!("target-sha256: {}", to_hex(&h.target_sha256));
    match &h.signature {
        Some(sig) => println!("signature: {}", to_hex(sig)),
        None => println!("signature: (none)"),
    }

    let mut check = PayloadCheck::new(&h);
    check.update(&prefix[header_len..]);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        check.update(&buf[..n]);
    }
    let integrity = check.finish();
    let signature = if keys.is_empty() {
        None
    } else {
        Some(h.verify_signature(keys))
    };
    let mut failed = 0;
    let mut report = |what: &str, r: &Result<(), PackageError>| match r {
        Ok(()) => println!("check {what}: ok"),
        Err(e) => {
            failed += 1;
            println!(
                "check {what}: FAILED: {e} (FUMO result {})",
                e.fumo_result()
            );
        }
    };
    report("integrity", &integrity);
    match &signature {
        Some(r) => report("signature", r),
        None => println!("check signature: not checked (no --verify-key)"),
    }
    if failed > 0 {
        return Err(Failure::Checks(format!("{name}: {failed} check(s) failed")));
    }
    Ok(())
}

/// Writes KEY (secret seed, base64, mode 0600) and KEY.pub (public key, base64).
fn keygen(output: &PathBuf, force: bool) -> Result<(), Failure> {
    let key = SigningKey::generate().map_err(|e| Failure::Package("keygen".into(), e))?;
    let mut pub_path = output.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    if !force {
        // Check both first, so a refusal leaves no half-written pair.
        if let Some(p) = [output, &pub_path].into_iter().find(|p| p.exists()) {
            return Err(Failure::Io(format!(
                "{} exists; use --force to overwrite",
                show(p)
            )));
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        // Never overwrite a key by accident.
        opts.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let io = |p: &PathBuf| {
        let p = show(p);
        move |e: std::io::Error| Failure::Io(format!("cannot write {p}: {e}"))
    };
    let mut f = opts.open(output).map_err(io(output))?;
    // An existing file keeps its old mode when opened: set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(output))?;
    }
    f.write_all(format!("{}\n", key.to_b64()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(output))?;
    let public = key.public().to_b64();
    let mut pub_opts = std::fs::OpenOptions::new();
    pub_opts.write(true);
    if force {
        pub_opts.create(true).truncate(true);
    } else {
        pub_opts.create_new(true);
    }
    pub_opts
        .open(&pub_path)
        .and_then(|mut f| f.write_all(format!("{public}\n").as_bytes()))
        .map_err(io(&pub_path))?;
    println!("secret key: {}", show(output));
    println!("public key: {} ({public})", show(&pub_path));
    Ok(())
}

/// The trusted keys: each a key file or the key itself in base64.
fn trusted_keys(args: &[String]) -> Result<Vec<PublicKey>, Failure> {
    args.iter()
        .map(|arg| {
            let path = PathBuf::from(arg);
            let text = if path.is_file() {
                read_text(&path)?
            } else {
                arg.clone()
            };
            PublicKey::from_b64(&text)
                .map_err(|e| Failure::Package(format!("--verify-key {arg}"), e))
        })
        .collect()
}

/// A key file's text (a key file is a few dozen bytes).
fn read_text(path: &PathBuf) -> Result<String, Failure> {
    let bytes = read_limited(path, 4096)?;
    String::from_utf8(bytes).map_err(|_| Failure::Io(format!("{} is not text", show(path))))
}

fn read_image(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    read_limited(path, pkg::MAX_PAYLOAD_LEN)
}

/// Reads a whole file of at most `max` bytes.
fn read_limited(path: &PathBuf, max: u64) -> Result<Vec<u8>, Failure> {
    let io = |e: std::io::Error| Failure::Io(format!("cannot read {}: {e}", show(path)));
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max.saturating_add(1)).read_to_end(&mut buf))
        .map_err(io)?;
    if buf.len() as u64 > max {
        return Err(Failure::Io(format!(
            "{} is larger than {max} bytes",
            show(path)
        )));
    }
    Ok(buf)
}

fn show(path: &std::path::Path) -> String {
    path.display().to_string()
}
