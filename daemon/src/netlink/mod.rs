//! Netlink: pure codecs for the kernel messages leash reads and sends
//! (conntrack, nf_tables set elements, rtnetlink), and the socket adapter.
