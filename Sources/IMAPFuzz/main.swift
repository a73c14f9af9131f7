print("IMAPFuzz: build with --sanitize=fuzzer")
