//! Management-tree URIs from arbitrary text: parse under tight and default limits;
//! what parses is canonical (parsing its text again gives the same URI) and its
//! parent and name put back together give it again.
#![no_main]

use dm_tree::uri::{child_path, last_segment, parent_path, valid_name, UriLimits};
use dm_tree::Uri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let tight = UriLimits {
        max_depth: 4,
        max_tot_len: 32,
        max_seg_len: 8,
    };
    for limits in [UriLimits::default(), tight] {
        let Ok(u) = Uri::parse(s, &limits) else {
            continue;
        };
        let canon = u.as_str().to_owned();
        let again = Uri::parse(&canon, &limits).expect("a canonical path parses");
        assert_eq!(again.as_str(), canon, "canonical form not stable");
        assert_eq!(Uri::path(&canon).expect("path").as_str(), canon);
        assert_eq!(u.without_query().as_str(), canon);
        if u.is_root() {
            assert_eq!(canon, ".");
            assert!(u.parent().is_none());
        } else {
            let parent = u.parent().expect("a non-root URI has a parent");
            assert_eq!(parent_path(&canon), Some(parent));
            assert!(valid_name(u.name()), "name {:?} not valid", u.name());
            assert_eq!(last_segment(&canon), u.name());
            assert_eq!(child_path(parent, u.name()), canon);
        }
    }
    let _ = Uri::path(s);
});
