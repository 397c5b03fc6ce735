//! Arbitrary directories never make discovery panic: every outcome is a list of
//! migrations or a list of file errors.

use proptest::prelude::*;

fn file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        // Names close to the real layouts, where the parsing edge cases are.
        "[0-9]{1,3}(\\.[0-9]{1,2})?_[a-z_]{0,6}(\\.up|\\.down)?\\.sql",
        "[VUR][0-9_.]{0,4}__[a-z]{0,4}\\.sql",
        "[0-9-]{1,6}_[a-z]{1,4}",
        // Anything at all.
        "[^/\\x00]{1,12}",
    ]
}

fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "(-- airlock:[a-z-]{0,12}( [a-z ]{0,10})?\n|-- migrate:(up|down)( transaction:false)?\n|SELECT 1;\n|'\n|\\$\\$\n)*"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn discovery_never_panics(files in proptest::collection::vec((file_name(), contents(), any::<bool>()), 0..8)) {
        let dir = tempfile::tempdir().unwrap();
        for (name, body, as_dir) in &files {
            let path = dir.path().join(name);
            if *as_dir {
                let _ = std::fs::create_dir_all(&path);
                let _ = std::fs::write(path.join("up.sql"), body);
            } else {
                let _ = std::fs::write(&path, body);
            }
        }
        match airlock_core::discover(dir.path()) {
            Ok(found) => {
                let versions: Vec<_> = found.migrations.iter().map(|m| m.version.clone()).collect();
                let mut sorted = versions.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(versions, sorted, "sorted and unique");
            }
            Err(errors) => prop_assert!(!errors.0.is_empty()),
        }
    }
}
