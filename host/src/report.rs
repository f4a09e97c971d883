//! Pictures and text a search run leaves in its folder (being written).
