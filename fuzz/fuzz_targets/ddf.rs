//! DDF documents (XML or WBXML) from arbitrary bytes; what parses is written back
//! (XML and WBXML) and parses again to the same description. The same bytes go
//! through the TNDS importer (a MgmtTree of nodes with values, as in a Replace).
#![no_main]

use dm_tree::ddf::{parse_ddf, write_document};
use dm_tree::doc::{read_root, write_wbxml, write_xml};
use dm_tree::tnds::parse_tnds;
use libfuzzer_sys::fuzz_target;
use syncml_core::Encoding;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = read_root(data) {
        let _ = parse_tnds(&root, ".");
        let _ = parse_tnds(&root, "./Vendor");
    }
    let Ok(roots) = parse_ddf(data) else {
        return;
    };
    let doc = write_document(&roots);
    for (enc, bytes) in [("XML", write_xml(&doc)), ("WBXML", write_wbxml(&doc))] {
        let bytes = match bytes {
            Ok(b) => b,
            // WBXML carries characters and bytes XML 1.0 cannot (control characters,
            // opaque data): a DDF read from WBXML may not be writable as XML.
            Err(_) if enc == "XML" && matches!(Encoding::detect(data), Ok(Encoding::Wbxml)) => {
                continue
            }
            Err(e) => panic!("a parsed DDF does not write as {enc}: {e}"),
        };
        let back = parse_ddf(&bytes).unwrap_or_else(|e| {
            panic!(
                "our {enc} DDF does not parse: {e}\n{}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(back, roots, "DDF changed in the {enc} round trip");
    }
});
