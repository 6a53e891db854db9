// Records the target triple for `leash --version` and `leash status`.
fn main() {
    println!("cargo:rustc-env=LEASH_TARGET={}", std::env::var("TARGET").unwrap_or_default());
}
