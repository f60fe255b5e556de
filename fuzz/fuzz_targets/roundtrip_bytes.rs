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

/// Whether the message holds mixed content with opaque runs: element children beside
/// opaque (CDATA) runs, in Data or in a kept unknown element.
fn mixed_content(m: &SyncMl) -> bool {
    let d = format!("{m:?}");
    d.contains("Opaque(") && (d.contains("Nodes(") || d.contains("Element(Element"))
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
    if from == Encoding::Wbxml && to == Encoding::Xml && back != *m && mixed_content(m) {
        // Known limit, not a crash: in mixed content (Data or kept elements: elements beside text and
        // opaque runs) XML cannot keep every WBXML sequence apart: a CR at the edge
        // of an opaque run is written as `&#13;` next to a CDATA section and reads
        // back as layout or merged into the run. What must hold then: the XML form is
        // a fixed point (it encodes and decodes to itself in both encodings).
        for again in [Encoding::Xml, Encoding::Wbxml] {
            let b = encode_with(&back, again, opts).expect("a decoded message encodes");
            let x = decode(&b).expect("our output decodes");
            assert_eq!(
                without_namespaces(&x),
                without_namespaces(&back),
                "XML form is not a fixed point"
            );
        }
        return;
    }
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
    // The transcoder reads command by command what decode read whole, and writes
    // what encode writes: the same value as decode + encode.
    for to in [Encoding::Xml, Encoding::Wbxml] {
        let whole = encode_with(&m, to, &EncodeOptions::default());
        match transcode(data, to, &EncodeOptions::default(), &Limits::default()) {
            Ok(out) => {
                let back = decode(&out).expect("transcoded output decodes");
                let whole = whole.expect("transcode wrote what encode refuses");
                let expected = decode(&whole).expect("our output decodes");
                assert_eq!(
                    back, expected,
                    "transcode to {to:?} differs from decode + encode"
                );
            }
            Err(e) if may_fail(from, to, &e) => {}
            Err(e) => panic!("decode accepted what transcode to {to:?} refused: {e}"),
        }
    }
});
