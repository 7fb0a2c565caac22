//! iotrelay-operator (work in progress).
