//! DDF documents (XML or WBXML) from arbitrary bytes; what parses is written back
//! (XML and WBXML) and parses again to the same description. The same bytes go
//! through the TNDS importer (a MgmtTree of nodes with values, as in a Replace).
#![no_main]

use dm_tree::ddf::{parse_ddf, write_document};
use dm_tree::doc::{read_root, write_wbxml, write_xml};
use dm_tree::tnds::parse_tnds;
use libfuzzer_sys::fuzz_target;

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
        let bytes = bytes.unwrap_or_else(|e| panic!("a parsed DDF does not write as {enc}: {e}"));
        let back = parse_ddf(&bytes).unwrap_or_else(|e| {
            panic!(
                "our {enc} DDF does not parse: {e}\n{}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(back, roots, "DDF changed in the {enc} round trip");
    }
});
