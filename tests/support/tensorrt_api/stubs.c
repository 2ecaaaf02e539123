/* Stand-ins for the TensorRT shared libraries, so that the `tensorrt` Python bindings import on a
 * machine without TensorRT or a GPU: every entry point the bindings link (readelf --dyn-syms on their
 * tensorrt.so) returns NULL or 0. Enough to read the module's classes, enums and methods; any call
 * that reaches TensorRT (creating a Builder, Runtime or parser) fails. Our own code, no NVIDIA source.
 */
void *createInferBuilder_INTERNAL(void *logger, int version) { return 0; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return 0; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return 0; }
void *getPluginRegistry(void) { return 0; }
void *getBuilderPluginRegistry(int capability) { return 0; }
int getInferLibVersion(void) { return 0; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *name_space) { return 0; }
/* TensorRT 8.6's bindings also link the Caffe and UFF parsers (libnvparsers.so.8) */
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return 0; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void) {}
void *_ZN11nvuffparser15createUffParserEv(void) { return 0; }
