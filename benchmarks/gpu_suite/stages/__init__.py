"""The suite's stages, one module per stage or group of related stages: build, smoke, tests
(model_tests, op_tests, all_tests), sanitizer, bench (bench, compile, layers). Each stage function
takes the running suite (runner.Suite: args, has_gpu, py, env, logs, record, save, live, settle,
left) and its deadline, and returns (status, note, result). table.py lists them."""
