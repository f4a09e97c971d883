//! The JNI facade for Android: the native methods of `dev.fbnet.core.FbnetNative`
//! (android/app/src/main/java/dev/fbnet/core/FbnetNative.kt). Strings and JSON cross the boundary;
//! long-lived objects (a running profile, a loaded model) stay here behind integer handles, so a stale
//! or wrong handle is an exception, never a dangling pointer. Every entry runs inside `with_env`, which
//! catches panics; errors and panics become `dev.fbnet.core.FbnetException` with the message
//! `kind: message`. A profile runs on a thread of its own, attached to the JVM to call the listener.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

use jni::errors::ErrorPolicy;
use jni::objects::{Global, JByteArray, JClass, JObject, JString, JValue};
use jni::strings::JNIString;
use jni::sys::{jint, jlong};
use jni::{Env, EnvUnowned, JavaVM, jni_sig, jni_str};

use super::{
    FbnetError, ModelRunner, ProfileListener, ProfileProgress, ProfileRequest, ProfileResult,
    Profiler, core_version, init_runtime,
};

/// What can fail in a native method: the core, or the JNI calls around it.
#[derive(Debug, thiserror::Error)]
enum FacadeError {
    #[error("{0}")]
    Core(#[from] FbnetError),
    #[error("other: JNI: {0}")]
    Jni(#[from] jni::errors::Error),
}

impl FacadeError {
    fn invalid(message: impl Into<String>) -> FacadeError {
        FacadeError::Core(FbnetError::InvalidInput {
            message: message.into(),
        })
    }
}

type Result<T> = std::result::Result<T, FacadeError>;

/// Throws `dev.fbnet.core.FbnetException("kind: message")` for an error or a panic (unless a Java
/// exception, such as one thrown by a listener, is already pending) and returns the default value.
struct ThrowFbnetException;

fn throw(env: &mut Env<'_>, message: String) {
    if env.exception_check() {
        return;
    }
    let _ = env.throw_new(
        jni_str!("dev/fbnet/core/FbnetException"),
        JNIString::from(message),
    );
}

impl<T: Default> ErrorPolicy<T, FacadeError> for ThrowFbnetException {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        err: FacadeError,
    ) -> jni::errors::Result<T> {
        throw(env, err.to_string());
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        payload: Box<dyn std::any::Any + Send + 'static>,
    ) -> jni::errors::Result<T> {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        throw(env, format!("other: internal error in mobile-core: {what}"));
        Ok(T::default())
    }
}

/// A profile running on its own thread.
struct ProfileJob {
    profiler: Arc<Profiler>,
    /// The profiling thread until it is awaited, then its outcome: one lock, held while joining, so a
    /// second awaiter waits for the first and then reads the same outcome.
    state: Mutex<JobState>,
}

type Outcome = std::result::Result<ProfileResult, FbnetError>;

enum JobState {
    Running(JoinHandle<Outcome>),
    Done(Outcome),
}

static NEXT_HANDLE: AtomicI64 = AtomicI64::new(1);
static PROFILES: Registry<Arc<ProfileJob>> = LazyLock::new(Default::default);
static MODELS: Registry<Arc<ModelRunner>> = LazyLock::new(Default::default);

/// Live native objects by handle.
type Registry<T> = LazyLock<Mutex<HashMap<i64, T>>>;

/// A registry's map, even after a panic elsewhere poisoned its lock.
fn registry<T>(m: &'static Registry<T>) -> MutexGuard<'static, HashMap<i64, T>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn insert<T>(m: &'static Registry<T>, value: T) -> i64 {
    let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    registry(m).insert(handle, value);
    handle
}

fn lookup<T: Clone>(m: &'static Registry<T>, handle: i64, what: &str) -> Result<T> {
    registry(m).get(&handle).cloned().ok_or_else(|| {
        FacadeError::invalid(format!("no {what} with handle {handle} (closed already?)"))
    })
}

fn remove<T>(m: &'static Registry<T>, handle: i64) -> Option<T> {
    registry(m).remove(&handle)
}

fn string(env: &Env<'_>, s: &JString<'_>, what: &str) -> Result<String> {
    if s.is_null() {
        return Err(FacadeError::invalid(format!("{what} is null")));
    }
    Ok(s.try_to_string(env)?)
}

fn optional_string(env: &Env<'_>, s: &JString<'_>) -> Result<Option<String>> {
    if s.is_null() {
        return Ok(None);
    }
    Ok(Some(s.try_to_string(env)?))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        FacadeError::Core(FbnetError::Other {
            message: format!("cannot write JSON: {e}"),
        })
    })
}

/// Forwards a profile's events to the app's Java/Kotlin listener from the profiling thread (attached to
/// the JVM for the thread's life).
struct JavaListener {
    vm: JavaVM,
    listener: Global<JObject<'static>>,
}

impl JavaListener {
    /// Calls `method` with `sig`; a Java exception thrown by the listener is cleared and ignored (a
    /// broken progress display must not stop the measurement).
    fn call(&self, f: impl FnOnce(&mut Env<'_>, &JObject<'_>) -> jni::errors::Result<()>) {
        // attached for the thread's life under its own name, so the app's logs say who calls; each call
        // in a local frame of its own, so the strings it makes are freed when it returns (a thread
        // attached for hours would otherwise pile up one local reference per progress report)
        let config = || jni::AttachConfig::new().thread_name(jni_str!("fbnet-profile"));
        let _ = self.vm.attach_current_thread_with_config(
            config,
            Some(jni::DEFAULT_LOCAL_FRAME_CAPACITY),
            |env| -> jni::errors::Result<()> {
                if f(env, &self.listener).is_err() && env.exception_check() {
                    env.exception_clear();
                }
                Ok(())
            },
        );
    }

    fn finished(&self, outcome: &std::result::Result<ProfileResult, FbnetError>) {
        self.call(|env, listener| {
            match outcome {
                Ok(result) => {
                    let text = serde_json::to_string(result).unwrap_or_default();
                    let s = env.new_string(text)?;
                    env.call_method(
                        listener,
                        jni_str!("onFinished"),
                        jni_sig!("(Ljava/lang/String;)V"),
                        &[JValue::Object(&s)],
                    )?;
                }
                Err(e) => {
                    let kind = env.new_string(e.kind())?;
                    let message = env.new_string(e.message())?;
                    env.call_method(
                        listener,
                        jni_str!("onError"),
                        jni_sig!("(Ljava/lang/String;Ljava/lang/String;)V"),
                        &[JValue::Object(&kind), JValue::Object(&message)],
                    )?;
                }
            }
            Ok(())
        });
    }
}

impl ProfileListener for JavaListener {
    fn on_progress(&self, p: ProfileProgress) {
        self.call(|env, listener| {
            let step = env.new_string(&p.step)?;
            env.call_method(
                listener,
                jni_str!("onProgress"),
                jni_sig!("(JJLjava/lang/String;D)V"),
                &[
                    JValue::Long(p.done as i64),
                    JValue::Long(p.total as i64),
                    JValue::Object(&step),
                    JValue::Double(p.eta_s),
                ],
            )?;
            Ok(())
        });
    }
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_initRuntime<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    library_path: JString<'local>,
) -> JString<'local> {
    env.with_env(|env| -> Result<JString<'local>> {
        let path = optional_string(env, &library_path)?;
        let info = init_runtime(path)?;
        Ok(env.new_string(json(&info)?)?)
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_coreVersion<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JString<'local> {
    env.with_env(|env| -> Result<JString<'local>> { Ok(env.new_string(core_version())?) })
        .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_startProfile<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    request_json: JString<'local>,
    listener: JObject<'local>,
) -> jlong {
    env.with_env(|env| -> Result<jlong> {
        let text = string(env, &request_json, "the request")?;
        let request: ProfileRequest = serde_json::from_str(&text)
            .map_err(|e| FacadeError::invalid(format!("the profile request is not valid: {e}")))?;
        if listener.is_null() {
            return Err(FacadeError::invalid("the listener is null"));
        }
        let profiler = Profiler::new(request)?;
        let java = Arc::new(JavaListener {
            vm: env.get_java_vm()?,
            listener: env.new_global_ref(&listener)?,
        });
        let worker = Arc::clone(&profiler);
        let thread = std::thread::Builder::new()
            .name("fbnet-profile".into())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker.run(Some(java.clone() as Arc<dyn ProfileListener>))
                }))
                .unwrap_or_else(|_| {
                    Err(FbnetError::Other {
                        message: "internal error in mobile-core while profiling".into(),
                    })
                });
                java.finished(&outcome);
                outcome
            })
            .map_err(|e| {
                FacadeError::Core(FbnetError::Other {
                    message: format!("cannot start the profiling thread: {e}"),
                })
            })?;
        Ok(insert(
            &PROFILES,
            Arc::new(ProfileJob {
                profiler,
                state: Mutex::new(JobState::Running(thread)),
            }),
        ))
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_cancelProfile<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    env.with_env(|_| -> Result<()> {
        lookup(&PROFILES, handle, "profile")?.profiler.cancel();
        Ok(())
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_awaitProfile<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JString<'local> {
    env.with_env(|env| -> Result<JString<'local>> {
        let job = lookup(&PROFILES, handle, "profile")?;
        let mut state = job.state.lock().unwrap_or_else(|e| e.into_inner());
        if let JobState::Running(_) = &*state {
            let placeholder = JobState::Done(Err(FbnetError::Other {
                message: "the profiling thread panicked".into(),
            }));
            if let JobState::Running(thread) = std::mem::replace(&mut *state, placeholder)
                && let Ok(outcome) = thread.join()
            {
                *state = JobState::Done(outcome);
            }
        }
        match &*state {
            JobState::Done(Ok(result)) => Ok(env.new_string(json(result)?)?),
            JobState::Done(Err(e)) => Err(FacadeError::Core(e.clone())),
            JobState::Running(_) => Err(FacadeError::invalid("the profile has not ended")),
        }
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_releaseProfile<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    env.with_env(|_| -> Result<()> {
        let job = remove(&PROFILES, handle)
            .ok_or_else(|| FacadeError::invalid(format!("no profile with handle {handle}")))?;
        // a running profile is cancelled; its thread ends on its own
        job.profiler.cancel();
        Ok(())
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_loadModel<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    path: JString<'local>,
    threads: jint,
) -> jlong {
    env.with_env(|env| -> Result<jlong> {
        let path = string(env, &path, "the model path")?;
        let runner = ModelRunner::load(path, threads.max(1) as u32)?;
        Ok(insert(&MODELS, runner))
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_loadModelBytes<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    bytes: JByteArray<'local>,
    name: JString<'local>,
    threads: jint,
) -> jlong {
    env.with_env(|env| -> Result<jlong> {
        if bytes.is_null() {
            return Err(FacadeError::invalid("the model bytes are null"));
        }
        let data = env.convert_byte_array(&bytes)?;
        let name = string(env, &name, "the model name")?;
        let runner = ModelRunner::from_bytes(data, name, threads.max(1) as u32)?;
        Ok(insert(&MODELS, runner))
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_modelInfo<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JString<'local> {
    env.with_env(|env| -> Result<JString<'local>> {
        let model = lookup(&MODELS, handle, "model")?;
        Ok(env.new_string(model.info_json())?)
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_classify<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    image: JByteArray<'local>,
    top_k: jint,
) -> JString<'local> {
    env.with_env(|env| -> Result<JString<'local>> {
        let model = lookup(&MODELS, handle, "model")?;
        if image.is_null() {
            return Err(FacadeError::invalid("the image bytes are null"));
        }
        let bytes = env.convert_byte_array(&image)?;
        let classes = model.classify(bytes, top_k.max(1) as u32)?;
        Ok(env.new_string(json(&classes)?)?)
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_bench<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    warmup: jint,
    runs: jint,
    lut_path: JString<'local>,
) -> JString<'local> {
    env.with_env(|env| -> Result<JString<'local>> {
        let model = lookup(&MODELS, handle, "model")?;
        let lut = optional_string(env, &lut_path)?;
        let report = model.bench(warmup.max(0) as u32, runs.max(0) as u32, lut)?;
        Ok(env.new_string(json(&report)?)?)
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_cancelBench<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    env.with_env(|_| -> Result<()> {
        lookup(&MODELS, handle, "model")?.cancel();
        Ok(())
    })
    .resolve::<ThrowFbnetException>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_fbnet_core_FbnetNative_closeModel<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    env.with_env(|_| -> Result<()> {
        remove(&MODELS, handle)
            .map(|_| ())
            .ok_or_else(|| FacadeError::invalid(format!("no model with handle {handle}")))
    })
    .resolve::<ThrowFbnetException>()
}
