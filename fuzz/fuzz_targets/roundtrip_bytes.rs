//! Round trip from arbitrary bytes: whatever decodes (either encoding) encodes, in
//! both encodings and both WBXML flavours, to bytes that decode to the same value;
//! and the streaming transcoder gives the same message as decode + encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncml_core::{
    decode, encode_with, transcode, EncodeOptions, EncodeProblem, Encoding, Error, Limits, SyncMl,
};
use syncml_dm_fuzz::{has_foreign_namespace, without_namespaces};

/// Whether encoding `m` to `to` may legitimately fail: the model can hold what the
/// other encoding cannot carry. WBXML carries any string and raw bytes, XML 1.0
/// does not (binary Data, control characters, element names that are not XML
/// names); XML cannot carry a NUL, so nothing decoded from XML has one, but WBXML
/// can (in OPAQUE, which the model keeps as bytes), so only that direction is
/// allowed to fail, and only for these reasons.
fn may_fail(from: Encoding, to: Encoding, e: &Error) -> bool {
    match (from, to, e) {
        (Encoding::Wbxml, Encoding::Xml, Error::Encode(p)) => matches!(
            p,
            EncodeProblem::BinaryInXml | EncodeProblem::CharNotInXml(_) | EncodeProblem::BadName(_)
        ),
        _ => false,
    }
}

fn check(from: Encoding, m: &SyncMl, to: Encoding, opts: &EncodeOptions) {
    let bytes = match encode_with(m, to, opts) {
        Ok(b) => b,
        Err(e) if may_fail(from, to, &e) => return,
        Err(e) => panic!("{from:?} message does not encode to {to:?}: {e}\n{m:#?}"),
    };
    let back = decode(&bytes).unwrap_or_else(|e| {
        panic!(
            "our {to:?} does not decode: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    if from != to && back != *m && has_foreign_namespace(m) {
        // Foreign namespaces do not survive WBXML (see `without_namespaces`).
        assert_eq!(
            without_namespaces(&back),
            without_namespaces(m),
            "{from:?} -> {to:?} -> decode changed the message"
        );
        return;
    }
    assert_eq!(&back, m, "{from:?} -> {to:?} -> decode changed the message");
}

fuzz_target!(|data: &[u8]| {
    let Ok(from) = Encoding::detect(data) else {
        return;
    };
    let Ok(m) = decode(data) else {
        return;
    };
    for to in [Encoding::Xml, Encoding::Wbxml] {
        check(from, &m, to, &EncodeOptions::default());
    }
    check(from, &m, Encoding::Wbxml, &EncodeOptions::no_string_table());
    check(from, &m, Encoding::Xml, &EncodeOptions::indented());
    // The transcoder reads command by command what decode read whole.
    for to in [Encoding::Xml, Encoding::Wbxml] {
        match transcode(data, to, &EncodeOptions::default(), &Limits::default()) {
            Ok(out) => {
                let back = decode(&out).expect("transcoded output decodes");
                if from != to && back != m && has_foreign_namespace(&m) {
                    assert_eq!(without_namespaces(&back), without_namespaces(&m));
                } else {
                    assert_eq!(back, m, "transcode to {to:?} differs from decode");
                }
            }
            Err(e) if may_fail(from, to, &e) => {}
            Err(e) => panic!("decode accepted what transcode to {to:?} refused: {e}"),
        }
    }
});
