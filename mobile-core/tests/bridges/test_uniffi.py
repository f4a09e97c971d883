"""The uniffi surface of mobile-core, from Python, against the built library: what the iOS app calls
(Swift is generated from the same metadata). Run by scripts/test-bridges.sh with the generated module
`mobile_core` on sys.path and FBNET_FIXTURES naming the folder of mobile-core's `bridge_fixtures` example.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

import mobile_core as m

FIXTURES = os.environ["FBNET_FIXTURES"]


def fixture(name):
    return os.path.join(FIXTURES, name)


def request(out_path, **kw):
    with open(fixture("space.json")) as f:
        space = f.read()
    args = dict(space=space, resolution=None, width=None, classes=None, input_channels=None,
                dtypes=["fp32", "int8"], threads=1, quick=True, device=None, out_path=out_path,
                resume=False)
    args.update(kw)
    return m.ProfileRequest(**args)


class Collect(m.ProfileListener):
    """Records progress; cancels the profiler after `cancel_after` events when given one."""

    def __init__(self, cancel_after=None):
        self.events = []
        self.threads = set()
        self.profiler = None
        self.cancel_after = cancel_after

    def on_progress(self, progress):
        self.events.append(progress)
        self.threads.add(threading.get_ident())
        if self.cancel_after is not None and len(self.events) >= self.cancel_after:
            self.profiler.cancel()


class Runtime(unittest.TestCase):
    def test_version_and_runtime(self):
        self.assertRegex(m.core_version(), r"^\d+\.\d+\.\d+")
        info = m.init_runtime(None)
        self.assertEqual(info.version, "1.31.1")
        self.assertTrue(os.path.exists(info.library), info.library)

    def test_a_missing_runtime_library_is_an_error_not_a_crash(self):
        # a fresh process, since a process keeps the first library it loaded
        code = ("import mobile_core as m\n"
                "try:\n"
                "    m.init_runtime('/nonexistent/libonnxruntime.so')\n"
                "except m.FbnetError.RuntimeUnavailable as e:\n"
                "    print('unavailable:', e)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=os.environ, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("unavailable:", out.stdout)
        self.assertIn("/nonexistent/libonnxruntime.so", out.stdout)


class Profile(unittest.TestCase):
    def test_a_quick_profile_writes_a_valid_table_with_ordered_progress(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "lut.json")
            device = m.DeviceMeta(model="Pixel Test", soc="Tensor T", cpu="", cores=0, os="", abi="")
            profiler = m.Profiler(request(out, device=device))
            listener = Collect()
            result = profiler.run(listener)
            self.assertEqual(result.path, out)
            self.assertTrue(os.path.exists(out))
            lut = json.loads(result.lut_json)
            self.assertEqual(lut["device"]["model"], "Pixel Test")
            self.assertEqual(lut["device"]["soc"], "Tensor T")
            self.assertEqual(sorted(lut["dtypes"]), ["fp32", "int8"])
            self.assertEqual(len(lut["entries"]), result.entries)
            self.assertEqual(result.entries, profiler.planned_ops())
            with open(out) as f:
                self.assertEqual(json.load(f)["space_hash"], lut["space_hash"])
            # progress: non-decreasing, ends at the total, each event names its step
            self.assertGreater(len(listener.events), 2)
            done = [e.done for e in listener.events]
            self.assertEqual(done, sorted(done))
            last = listener.events[-1]
            self.assertEqual(last.done, last.total)
            self.assertTrue(all(e.step for e in listener.events))
            self.assertTrue(all(e.eta_s >= 0 for e in listener.events))

    def test_cancel_keeps_the_partial_table_and_resume_finishes_it(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "lut.json")
            profiler = m.Profiler(request(out))
            listener = Collect(cancel_after=1)
            listener.profiler = profiler
            with self.assertRaises(m.FbnetError.Cancelled):
                profiler.run(listener)
            self.assertTrue(os.path.exists(out), "the partial table is kept")
            planned = listener.events[0].total
            resumed = m.Profiler(request(out, resume=True))
            events = Collect()
            result = resumed.run(events)
            self.assertEqual(result.entries, resumed.planned_ops())
            # the resumed run planned only what was left
            self.assertLess(events.events[-1].total, planned)

    def test_bad_requests_are_invalid_input(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "lut.json")
            for kw in [dict(space="no-such-space"), dict(dtypes=["fp16"]), dict(dtypes=[]),
                       dict(threads=0), dict(space="{not json")]:
                with self.assertRaises(m.FbnetError.InvalidInput, msg=str(kw)) as ctx:
                    m.Profiler(request(out, **kw))
                self.assertTrue(str(ctx.exception), kw)


class Models(unittest.TestCase):
    def test_load_classify_and_bench(self):
        with open(fixture("image.png"), "rb") as f:
            image = f.read()
        for name in ["model.onnx", "model.int8.onnx"]:
            runner = m.ModelRunner.load(fixture(name), 1)
            info = json.loads(runner.info_json())
            self.assertEqual(info["labels"], ["ant", "bee", "cat", "dog"])
            self.assertEqual(info["dtype"], "int8" if "int8" in name else "fp32")
            classes = runner.classify(image, 3)
            self.assertEqual(len(classes), 3)
            probs = [c.probability for c in classes]
            self.assertEqual(probs, sorted(probs, reverse=True))
            self.assertTrue(0.0 <= probs[-1] <= probs[0] <= 1.0)
            self.assertEqual(len({c.index for c in classes}), 3)
            self.assertEqual(classes[0].label, info["labels"][classes[0].index])
            report = runner.bench(2, 10, None)
            self.assertEqual(report.runs, 10)
            self.assertTrue(0 < report.p10_us <= report.p50_us <= report.p90_us)
            self.assertIsNone(report.predicted_us)  # the fixtures carry no table

    def test_a_table_of_the_space_predicts_and_bytes_load_too(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "lut.json")
            m.Profiler(request(out)).run(None)
            with open(fixture("model.onnx"), "rb") as f:
                runner = m.ModelRunner.from_bytes(f.read(), "picked.onnx", 1)
            report = runner.bench(2, 10, out)
            self.assertGreater(report.predicted_us, 0)
            self.assertGreater(report.measured_over_predicted, 0)
            self.assertIn("lut.json", report.predicted_by)

    def test_bad_models_and_images_are_errors_that_name_them(self):
        with tempfile.TemporaryDirectory() as d:
            text = os.path.join(d, "notes.onnx")
            with open(text, "w") as f:
                f.write("not a model")
            with self.assertRaises(m.FbnetError.InvalidInput) as ctx:
                m.ModelRunner.load(text, 1)
            self.assertIn("notes.onnx", str(ctx.exception))
            with self.assertRaises(m.FbnetError) as ctx:
                m.ModelRunner.load(os.path.join(d, "missing.onnx"), 1)
            self.assertIn("missing.onnx", str(ctx.exception))
            with self.assertRaises(m.FbnetError.InvalidInput):
                m.ModelRunner.from_bytes(b"\x00\x01garbage", "garbage.onnx", 1)
            runner = m.ModelRunner.load(fixture("model.onnx"), 1)
            with self.assertRaises(m.FbnetError.InvalidInput):
                runner.classify(b"not an image", 3)
            with self.assertRaises(m.FbnetError.InvalidInput):
                runner.bench(1, 0, None)
            with self.assertRaises(m.FbnetError):
                runner.bench(1, 5, os.path.join(d, "no-table.json"))
            with self.assertRaises(m.FbnetError.InvalidInput):
                runner.bench(1, 1_000_000, None)
            # a long benchmark stops when another thread cancels it
            outcome = {}

            def long_bench():
                try:
                    runner.bench(0, 100_000, None)
                except m.FbnetError as e:
                    outcome["error"] = e

            worker = threading.Thread(target=long_bench)
            worker.start()
            worker.join(0.2)
            runner.cancel()
            worker.join(10)
            self.assertFalse(worker.is_alive(), "the benchmark did not stop")
            self.assertIsInstance(outcome.get("error"), m.FbnetError.Cancelled)


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    failed = len(result.failures) + len(result.errors)
    # a line like cargo's, which scripts/test.sh counts
    print(f"test result: {'ok' if failed == 0 else 'FAILED'}. {result.testsRun - failed} passed; {failed} failed")
    sys.exit(1 if failed else 0)
