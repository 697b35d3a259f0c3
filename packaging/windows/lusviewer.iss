; Inno Setup script for LUS Viewer on Windows. UNTESTED: written on Linux, where it
; cannot be built; a maintainer on Windows builds it as in docs/packaging.md:
;
;   py -3.11 -m venv build\venv-win
;   build\venv-win\Scripts\pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
;   build\venv-win\Scripts\pip install . "pyinstaller>=6.10"
;   build\venv-win\Scripts\pyinstaller --noconfirm --clean build.spec
;   build\venv-win\Scripts\python -c "import subprocess,sys; sys.exit(subprocess.call(['dist/lusviewer/lusviewer-cli.exe','--self-test']))"
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" packaging\windows\lusviewer.iss
;
; Output: dist\lusviewer-<version>-setup.exe (per-user install, no admin rights needed).

#define AppName "LUS Viewer"
#define AppVersion "0.1.0"
#define AppExe "lusviewer.exe"
#define SrcDir "..\..\dist\lusviewer"

[Setup]
AppId={{6B0F3C1E-5E7A-4C1B-9D7E-4C55A1E0B2A1}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=lusviewer developers
DefaultDirName={autopf}\LUS Viewer
DefaultGroupName=LUS Viewer
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=lusviewer-{#AppVersion}-setup
SetupIconFile=..\..\resources\icons\lusviewer.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesAssociations=yes
LicenseFile=..\..\LICENSE

[Files]
Source: "{#SrcDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\LUS Viewer"; Filename: "{app}\{#AppExe}"
Name: "{group}\Uninstall LUS Viewer"; Filename: "{uninstallexe}"
Name: "{autodesktop}\LUS Viewer"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

; "Open with LUS Viewer" for the clip types (an extra handler: existing defaults are kept).
[Registry]
Root: HKA; Subkey: "Software\Classes\LUSViewer.Clip"; ValueType: string; ValueName: ""; ValueData: "Ultrasound clip"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\LUSViewer.Clip\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#AppExe},0"
Root: HKA; Subkey: "Software\Classes\LUSViewer.Clip\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""
Root: HKA; Subkey: "Software\Classes\.mp4\OpenWithProgids"; ValueType: string; ValueName: "LUSViewer.Clip"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.avi\OpenWithProgids"; ValueType: string; ValueName: "LUSViewer.Clip"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.mov\OpenWithProgids"; ValueType: string; ValueName: "LUSViewer.Clip"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.mpg\OpenWithProgids"; ValueType: string; ValueName: "LUSViewer.Clip"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.mpeg\OpenWithProgids"; ValueType: string; ValueName: "LUSViewer.Clip"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.gif\OpenWithProgids"; ValueType: string; ValueName: "LUSViewer.Clip"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.dcm\OpenWithProgids"; ValueType: string; ValueName: "LUSViewer.Clip"; ValueData: ""; Flags: uninsdeletevalue

[Run]
Filename: "{app}\{#AppExe}"; Description: "Start LUS Viewer"; Flags: nowait postinstall skipifsilent
