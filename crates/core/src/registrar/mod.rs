//! The pool registrar (ENRP server): the ASAP server side for pool elements
//! and users, ENRP replication with its peers, takeover of failed peers, and
//! the Takeover Suggestion.

pub mod balance;
