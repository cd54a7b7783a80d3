#!/usr/bin/env python3
"""A damocles-worker `transfer` processor in Python that persists sector files into S3.

Standard library only. Configure it in the worker:

    [[processors.transfer]]
    bin = "python3"
    args = ["/path/to/transfer_s3.py"]

    [[attached]]
    name = "s3"                       # the manager's name of the store
    location = "s3://bucket/prefix"   # informational
    plugin = "s3"
    meta = { Endpoint = "http://10.0.0.5:9000" }   # overrides the manager's Meta, key by key

The worker sends, per sector, one task whose routes copy the local sealed file and cache files
to object paths (`sealed/s-t01000-1`, `cache/s-t01000-1/p_aux`) of the store, and whose
`stores[name].meta` holds the store's settings: `Bucket`, `Prefix`, `Endpoint`, `Region`,
`AccessKey`, `SecretKey`, `SessionToken` (keys are case-insensitive; credentials fall back to
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN), and `PartSize` (bytes, default
64 MiB: larger files go up in parts, so a 32 GiB sealed file fits). Requests are signed with
AWS Signature V4, path-style. A route between two local paths is a plain copy.

Protocol (vc-processors): print `transfer processor ready`, then answer each request line
`{"id": N, "task": {...}}` with `{"id": N, "err_msg": null | "...", "output": true | null}`.
Logs go to stderr, which the worker logs with the stage and pid.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import sys
import urllib.parse
import xml.etree.ElementTree as ET

STAGE = "transfer"
DEFAULT_PART_SIZE = 64 << 20
MIN_PART_SIZE = 5 << 20


def log(msg):
    print(f"transfer_s3: {msg}", file=sys.stderr, flush=True)


class S3Error(Exception):
    pass


class Bucket:
    """One bucket reached with the settings of one store's meta."""

    def __init__(self, store_name, meta):
        m = {k.lower(): v for k, v in (meta or {}).items()}

        def need(key, env=None):
            value = m.get(key.lower()) or (os.environ.get(env) if env else None)
            if not value:
                raise S3Error(f"store {store_name}: Meta.{key} is required")
            return value

        self.bucket = need("Bucket")
        self.prefix = m.get("prefix", "").strip("/")
        endpoint = urllib.parse.urlsplit(need("Endpoint"))
        if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
            raise S3Error(f"store {store_name}: Meta.Endpoint {m['endpoint']!r} is not an http(s) URL")
        self.https = endpoint.scheme == "https"
        self.host = endpoint.netloc
        self.region = m.get("region") or "us-east-1"
        if "accesskey" in m:
            self.access_key = m["accesskey"]
            self.secret_key = need("SecretKey")
            self.token = m.get("sessiontoken")
        else:
            self.access_key = need("AccessKey", "AWS_ACCESS_KEY_ID")
            self.secret_key = need("SecretKey", "AWS_SECRET_ACCESS_KEY")
            self.token = os.environ.get("AWS_SESSION_TOKEN")
        try:
            self.part_size = int(m.get("partsize", DEFAULT_PART_SIZE))
        except ValueError:
            raise S3Error(f"store {store_name}: Meta.PartSize {m['partsize']!r} is not a number")
        if self.part_size < MIN_PART_SIZE:
            raise S3Error(f"store {store_name}: Meta.PartSize is below S3's minimum of {MIN_PART_SIZE}")

    def key(self, path):
        parts = [p for p in str(path).split("/")]
        if str(path).startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise S3Error(f"{path!r} is not an object path (relative, no empty, . or .. parts)")
        return f"{self.prefix}/{path}" if self.prefix else str(path)

    def request(self, method, key, query=None, body=b"", expect=(200,)):
        """One signed request; answers (status, headers, body bytes)."""
        query = query or {}
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        uri = "/" + urllib.parse.quote(f"{self.bucket}/{key}", safe="/-_.~")
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(query.items())
        )
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {
            "host": self.host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        if self.token:
            headers["x-amz-security-token"] = self.token
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                uri,
                canonical_query,
                "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers)),
                signed,
                payload_hash,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        k = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        headers["content-length"] = str(len(body))
        conn_type = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = conn_type(self.host, timeout=120)
        try:
            target = uri + ("?" + canonical_query if canonical_query else "")
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            raise S3Error(f"{method} s3://{self.bucket}/{key}: {e}") from e
        finally:
            conn.close()
        if resp.status not in expect:
            text = data.decode(errors="replace").strip()
            raise S3Error(f"{method} s3://{self.bucket}/{key}: HTTP {resp.status}: {text[:300]}")
        return resp.status, resp.headers, data

    def upload_file(self, src, path):
        key = self.key(path)
        size = os.path.getsize(src)
        with open(src, "rb") as f:
            if size <= self.part_size:
                self.request("PUT", key, body=f.read())
            else:
                self.upload_parts(f, key)
        _, headers, _ = self.request("HEAD", key)
        stored = int(headers.get("Content-Length", "-1"))
        if stored != size:
            raise S3Error(f"s3://{self.bucket}/{key} holds {stored} bytes, but {src} has {size}")

    def upload_parts(self, f, key):
        _, _, data = self.request("POST", key, query={"uploads": ""})
        upload_id = next((e.text for e in ET.fromstring(data).iter() if e.tag.endswith("UploadId")), None)
        if not upload_id:
            raise S3Error(f"s3://{self.bucket}/{key}: no UploadId in the answer")
        try:
            etags = []
            while True:
                chunk = f.read(self.part_size)
                if not chunk:
                    break
                number = len(etags) + 1
                _, headers, _ = self.request(
                    "PUT", key, query={"partNumber": str(number), "uploadId": upload_id}, body=chunk
                )
                etags.append(headers.get("ETag", ""))
            body = "<CompleteMultipartUpload>" + "".join(
                f"<Part><PartNumber>{i + 1}</PartNumber><ETag>{etag}</ETag></Part>"
                for i, etag in enumerate(etags)
            ) + "</CompleteMultipartUpload>"
            _, _, data = self.request("POST", key, query={"uploadId": upload_id}, body=body.encode())
            if b"<Error>" in data:
                raise S3Error(f"s3://{self.bucket}/{key}: completing the upload failed: {data[:300]!r}")
        except Exception:
            try:
                self.request("DELETE", key, query={"uploadId": upload_id}, expect=(200, 204))
            except S3Error as e:
                log(f"aborting the upload of {key} failed too: {e}")
            raise


def upload(src, bucket, path):
    if not os.path.isabs(src):
        raise S3Error(f"src path is relative: {src}")
    if not os.path.exists(src):
        raise S3Error(f"src path not exists: {src}")
    if os.path.isdir(src):
        for root, _dirs, files in os.walk(src, followlinks=True):
            for name in sorted(files):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, src).replace(os.sep, "/")
                bucket.upload_file(full, f"{path}/{rel}")
    else:
        bucket.upload_file(src, path)


def copy_local(src, dest):
    if not os.path.isabs(src) or not os.path.isabs(dest):
        raise S3Error(f"local routes need absolute paths: {src} -> {dest}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.isdir(src):
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        tmp = f"{dest}.{os.getpid()}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


def s3_store(task, item):
    """The bucket a route end names: a store of `task.stores` whose meta has a Bucket."""
    name = item.get("store_name")
    info = task.get("stores", {}).get(name) if name else None
    meta = (info or {}).get("meta") or {}
    if not any(k.lower() == "bucket" for k in meta):
        return None
    return Bucket(name, meta)


def transfer(task):
    for index, route in enumerate(task["routes"]):
        src, dest = route["src"], route["dest"]
        try:
            if s3_store(task, src) is not None:
                raise S3Error("reading from S3 is not supported by this processor")
            bucket = s3_store(task, dest)
            if bucket is None:
                copy_local(src["uri"], dest["uri"])
            else:
                upload(src["uri"], bucket, dest["uri"])
        except (S3Error, OSError, KeyError) as e:
            raise S3Error(f"route {index}: {src.get('uri')} -> {dest.get('uri')}: {e}") from e
        log(f"route {index} done: {src['uri']} -> {dest.get('store_name')}:{dest['uri']}")
    return True


def main():
    sys.stdout.write(f"{STAGE} processor ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            rid = request["id"]
        except (ValueError, KeyError, TypeError) as e:
            log(f"unreadable request line: {e}")
            continue
        try:
            answer = {"id": rid, "err_msg": None, "output": transfer(request["task"])}
        except Exception as e:  # every failure is reported to the worker, none kills the loop
            answer = {"id": rid, "err_msg": str(e), "output": None}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
