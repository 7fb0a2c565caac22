//! iotrelay-esp (work in progress).
